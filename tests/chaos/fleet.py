"""A fleet of real gateway processes on one store URL, which chaos tests start, kill -9 and restart.

Owns: writing one gateway config (the test PKI of `tests.integration.harness`, short leases so that faults
resolve in seconds), starting `fedgate gateway run` processes on it (optionally armed with a named crash point,
`tests.chaos.crashpoints`), waiting for them to serve, killing them with -9, stopping them, and the address
agents and clients dial. It does not check anything after a fault (`tests.chaos.invariants` does).

Every member listens on the fleet's one port unless given another: the first member picks a free port, and a
restart reuses it, so agents and clients that were given the address before find the gateway again. A later
case with a standby gateway on PostgreSQL starts a second member with `start(port=0)` (its own port) and gives
agents both addresses; `kill(member)` then kills the leader and `invariants.check_federation` is called as for
every other fault.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.transport.client import FederationClient
from gateway.trust.credentials import Credentials
from tests.chaos.crashpoints import POINTS, SITECUSTOMIZE
from tests.integration.harness import Pki, write_gateway_config
from tests.waiting import eventually

CHAOS_SETTINGS: dict[str, object] = {
    "site_lease_s": 3,
    "report_interval_s": 0.5,
    "restart_grace_s": 3,
    "schedule_period_s": 0.2,
}
"""Short leases and intervals: a site silent for 3 s is lost, a restarted gateway waits 3 s before it judges."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class GatewayProcess:
    """One `fedgate gateway run` process of the fleet; its stderr goes to `log`."""

    def __init__(self, config: Path, log: Path, env: dict[str, str], prefix: Sequence[str] = ()) -> None:
        self.ready = log.with_suffix(".ready")
        self.ready.unlink(missing_ok=True)
        self.log = log
        with log.open("a") as err:
            self.process = subprocess.Popen(
                [
                    *prefix,
                    sys.executable,
                    "-m",
                    "fedgate.cli",
                    "gateway",
                    "run",
                    "--config",
                    str(config),
                    "--ready-file",
                    str(self.ready),
                ],
                cwd=config.parent,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                text=True,
            )

    def wait_serving(self, timeout: float = 30) -> str:
        """The address it serves on, once it does; fails with its log if it exits first."""
        eventually(
            lambda: self.ready.exists() or self.process.poll() is not None, timeout=timeout, what="a gateway to serve"
        )
        assert self.ready.exists(), f"the gateway exited {self.process.returncode}:\n{self.tail()}"
        return self.ready.read_text().split()[0]

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """kill -9, and reap it."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
        self.process.wait(10)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; kill -9 if it does not end in `timeout`. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.process.returncode)


class GatewayFleet:
    """Gateway processes over one store URL, in `root`, with the test PKI. `settings` are config keys added to
    (and overriding) `CHAOS_SETTINGS`; `prefix` runs every member inside another command (a mount namespace)."""

    def __init__(self, pki: Pki, root: Path, store_url: str, prefix: Sequence[str] = (), **settings: object) -> None:
        self.pki = pki
        self.root = root
        self.store_url = store_url
        self.prefix = tuple(prefix)
        self.settings = {**CHAOS_SETTINGS, **settings}
        self.port = free_port()
        self.members: list[GatewayProcess] = []
        root.mkdir(parents=True, exist_ok=True)
        self._inject = root / "inject"
        self._inject.mkdir(exist_ok=True)
        (self._inject / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self.crash_mark = root / "crashed-at"

    @property
    def address(self) -> str:
        """The address agents and clients dial (the fleet's one port)."""
        return f"127.0.0.1:{self.port}"

    @property
    def current(self) -> GatewayProcess:
        return self.members[-1]

    def config(self, port: int) -> Path:
        workdir = self.root / f"gw-{port}"
        workdir.mkdir(exist_ok=True)
        return write_gateway_config(self.pki, workdir, port, self.store_url, **self.settings)

    def start(
        self, crash: str = "", crash_after: int = 1, port: int | None = None, wait: bool = True
    ) -> GatewayProcess:
        """Start a member on the fleet's port (or `port`; 0 for a free one), armed to kill itself with -9 at the
        named crash point (the `crash_after`-th time it is reached); waits until it serves unless `wait` is false."""
        assert not crash or crash in POINTS, f"unknown crash point {crash!r}; known: {POINTS}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FEDGATE_CHAOS_")}
        if crash:
            self.crash_mark.unlink(missing_ok=True)
            env.update(
                FEDGATE_CHAOS_CRASH=crash,
                FEDGATE_CHAOS_CRASH_AFTER=str(crash_after),
                FEDGATE_CHAOS_CRASH_MARK=str(self.crash_mark),
                PYTHONPATH=os.pathsep.join(p for p in (str(self._inject), env.get("PYTHONPATH", "")) if p),
            )
        config = self.config(self.port if port is None else port)
        member = GatewayProcess(config, self.root / f"gateway-{len(self.members)}.log", env, self.prefix)
        self.members.append(member)
        if wait:
            member.wait_serving()
        return member

    def wait_crashed(self, point: str, timeout: float = 30) -> None:
        """Wait until the current member killed itself at `point` (SIGKILL, and the mark names the point)."""
        member = self.current
        eventually(
            lambda: not member.alive(), timeout=timeout, what=f"the gateway to crash at {point}", detail=member.tail
        )
        assert member.process.returncode == -signal.SIGKILL, member.tail()
        assert self.crash_mark.exists() and self.crash_mark.read_text() == point, member.tail()

    def restart(self) -> GatewayProcess:
        """kill -9 the current member if it still runs, then start a fresh, unarmed one on the same store."""
        if self.members and self.current.alive():
            self.current.kill()
        return self.start()

    def client(self, creds: Path, timeout: float = 10) -> FederationClient:
        return FederationClient(self.address, Credentials.from_dir(creds), timeout=timeout)

    def logs(self) -> str:
        return "\n".join(f"--- {m.log.name}\n{m.tail(3000)}" for m in self.members)

    def close(self) -> None:
        for member in self.members:
            if member.alive():
                member.stop(15)
