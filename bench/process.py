"""A server in a child process that announces `host:port` in a ready file, as `fedgate gateway run` does.

Owns: starting the command, waiting for the ready file (or for the child to die, with its stderr in the
error), and stopping it with SIGTERM. Servers run in their own process so that the server and the load
generator never share one GIL. It does not know what the server serves.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 30.0


class ServerFailed(RuntimeError):
    """The server process exited before it was ready, never became ready, or did not stop cleanly."""


class ServerProcess:
    """`with ServerProcess(cmd, workdir) as server:` runs `cmd --ready-file R`; `server.address` is host:port."""

    def __init__(
        self, command: Sequence[str], workdir: Path, name: str, env: Mapping[str, str] | None = None, cwd: Path = REPO
    ) -> None:
        self.name = name
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self.ready_file = workdir / f"{name}.ready"
        self.log_file = workdir / f"{name}.log"
        self._command = [*command, "--ready-file", str(self.ready_file)]
        self._proc: subprocess.Popen[bytes] | None = None
        self.address = ""

    def __enter__(self) -> ServerProcess:
        with self.log_file.open("wb") as log:
            self._proc = subprocess.Popen(
                self._command, cwd=self._cwd, env=self._env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.ready_file.exists():
            if self._proc.poll() is not None:
                raise ServerFailed(f"{self.name} exited with {self._proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerFailed(f"{self.name} not ready after {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}")
            time.sleep(0.02)
        self.address = self.ready_file.read_text().strip()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop(check=exc_type is None)

    def stop(self, check: bool = False) -> None:
        """SIGTERM and wait; with `check`, a non-zero exit is an error (the server did not stop cleanly)."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            code = self._proc.wait(15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
            raise ServerFailed(f"{self.name} ignored SIGTERM for 15 s:\n{self.log_tail()}") from None
        if check and code != 0:
            raise ServerFailed(f"{self.name} exited with {code} on SIGTERM:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
