"""Running Slurm's client commands (sbatch, squeue, sacct, scontrol, scancel, sinfo) without blocking.

Owns: starting each command as an asyncio subprocess with the agent's environment minus its FEDGATE_*
settings plus SLURM_CONF (when configured), bounding it by a timeout, capturing its output, and counting
calls per command (for diagnostics and tests). It does not interpret output (`agents.backends.slurm.parse`)
and does not decide what a failed command means for a job: callers do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agents.errors import BackendError


class SlurmTimeout(BackendError):
    """A Slurm command did not answer in time: slurmctld may be down or overloaded. The command may still
    have taken effect (an sbatch whose reply was lost)."""

    reason = "SLURM_TIMEOUT"


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def problem(self) -> str:
        """Slurm's own words for what went wrong, without the `sbatch: error: ` prefixes, on one line."""
        lines = []
        for line in self.stderr.splitlines():
            text = line.strip()
            program = os.path.basename(self.argv[0]) if self.argv else ""
            for prefix in (f"{program}: error: ", f"{program}: fatal: ", "error: "):
                if text.startswith(prefix):
                    text = text[len(prefix) :]
            if text and text not in lines:
                lines.append(text)
        return "; ".join(lines) or f"exit code {self.returncode} and no message"


class SlurmCommands:
    """Runs Slurm client commands for one backend. All methods must be called on the agent's event loop."""

    def __init__(self, slurm_conf: Path | None, timeout_s: float) -> None:
        self._slurm_conf = slurm_conf
        self._timeout_s = timeout_s
        self.calls: Counter[str] = Counter()
        """How often each command was run, by program name (sbatch, squeue, ...)."""

    @property
    def slurm_conf(self) -> Path | None:
        return self._slurm_conf

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment Slurm commands run with. The agent's own FEDGATE_* settings (credential paths)
        never reach Slurm, and so never reach a job that sbatch exports them to."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FEDGATE_")}
        if self._slurm_conf is not None:
            env["SLURM_CONF"] = str(self._slurm_conf)
        env.update(extra or {})
        return env

    async def run(self, program: str, *args: str, cwd: Path | None = None) -> CommandResult:
        """Run `program args...` to its end. Raises BackendError when it cannot start, SlurmTimeout when it
        takes longer than the timeout (it is killed); a non-zero exit is returned, not raised."""
        self.calls[program] += 1
        argv = (program, *args)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.environment(),
                cwd=cwd,
            )
        except FileNotFoundError:
            raise BackendError(
                f"the Slurm command {program!r} was not found on this agent's PATH; install the Slurm client "
                "tools (Debian: slurm-client) on the agent's machine or fix PATH"
            ) from None
        except OSError as exc:
            raise BackendError(f"cannot run the Slurm command {program!r}: {exc.strerror or exc}") from exc
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=self._timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise SlurmTimeout(
                f"{program} did not answer within {self._timeout_s:g}s; check that slurmctld is up (`scontrol ping`)"
            ) from None
        except asyncio.CancelledError:  # the caller gave up (agent stopping): leave no stray client behind
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise
        return CommandResult(
            argv=argv,
            returncode=process.returncode if process.returncode is not None else -1,
            stdout=stdout.decode(errors="replace"),
            stderr=stderr.decode(errors="replace"),
        )
