"""A real, throw-away PostgreSQL cluster on this machine's own server binaries, for `fedgate demo --standby` and
the tests: `initdb` into a temp dir, `pg_ctl` on a free loopback port.

Owns: finding the server binaries, creating a private cluster (own data dir, own Unix socket dir, TCP on
127.0.0.1 only, fsync on so that durability is the real one), starting, stopping and restarting it (the chaos
tests' "PostgreSQL restarted under load"), and removing it. It speaks no SQL: the tests add databases with
their own client (`tests/pgserver.py`), the demo uses the cluster's default database.

Running as root (CI, this machine): PostgreSQL refuses to run as root, so `initdb` and `pg_ctl` run as the
`postgres` system user that Debian's `postgresql` package creates, in a temp dir owned by that user (not under
pytest's tmp_path, which is root-only). Running as any other user, they run as that user.
The cluster trusts connections from loopback only (`--auth=trust`): it holds nothing but demo or test data and
lives for one run; the URL carries its superuser `fedgate`. Never use it for a real federation.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

SUPERUSER = "fedgate"
RUN_AS = "postgres"
"""The system user the server runs as when fedgate runs as root (Debian's postgresql package creates it)."""
START_TIMEOUT_S = 60


C = TypeVar("C", bound="PgCluster")


class PostgresUnavailable(Exception):
    """PostgreSQL's server binaries are not installed, or cannot run here. The message says which."""


def find_binaries() -> Path:
    """The folder holding initdb and pg_ctl: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if candidates:
        return candidates[-1].parent
    raise PostgresUnavailable("no initdb/pg_ctl found; install with `apt-get install -y postgresql`")


@dataclass
class PgCluster:
    """A running throw-away cluster. `url(dbname)` is a libpq URL for one of its databases."""

    root: Path
    bin: Path
    port: int
    user: str | None  # the system user the server runs as; None: this process's own

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def _pg_ctl(self, *args: str, timeout: float = START_TIMEOUT_S) -> None:
        _run([str(self.bin / "pg_ctl"), "-D", str(self.data), *args], self.user, self.root, timeout)

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root / 'socket'} -c listen_addresses=127.0.0.1 -c fsync=on "
            "-c synchronous_commit=on -c max_connections=200"
        )
        self._pg_ctl("start", "-w", "-t", str(START_TIMEOUT_S), "-l", str(self.log_file), "-o", options)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: roll back open transactions; `immediate`: like a crash, recovery at start)."""
        self._pg_ctl("stop", "-w", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def destroy(self) -> None:
        """Stop the server if it runs and remove its files."""
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster(kind: type[C]) -> C:
    """initdb a fresh cluster in a temp dir and start it on a free loopback port. Raises PostgresUnavailable
    when it cannot run here, RuntimeError when it fails to start (with its log)."""
    binaries = find_binaries()
    user: str | None = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(RUN_AS)
        except KeyError:
            raise PostgresUnavailable(
                f"running as root needs the `{RUN_AS}` system user; install the `postgresql` package"
            ) from None
        user = RUN_AS
    root = Path(tempfile.mkdtemp(prefix="fedgate-pg-"))
    (root / "socket").mkdir()
    if user is not None:
        account = pwd.getpwnam(user)
        for path in (root, root / "socket"):
            os.chown(path, account.pw_uid, account.pw_gid)
    server = kind(root, binaries, 0, user)
    try:
        _run(
            [
                str(binaries / "initdb"),
                "-D",
                str(server.data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            user,
            root,
            START_TIMEOUT_S,
        )
        for attempt in range(3):  # the free port may be taken between choosing and binding it
            server.port = _free_port()
            try:
                server.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
    except BaseException:
        log = server.log()
        server.destroy()
        if log:
            raise RuntimeError(f"PostgreSQL did not start; its log:\n{log[-4000:]}") from None
        raise
    return server


def _run(args: list[str], user: str | None, cwd: Path, timeout: float) -> None:
    done = subprocess.run(args, user=user, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip() or done.stdout}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
