"""How long a federation on PostgreSQL is without a leader: kill -9 of the leader, and SIGTERM of it.

Owns: starting a throw-away PostgreSQL cluster (this machine's `initdb`/`pg_ctl`, `gateway.demo.pgcluster`)
and two real `fedgate gateway run` processes on it with the default lease (6 s), then, each round: kill -9 the
leader and time until the standby's grpc health reports `fedgate.v1.JobService` SERVING; start the killed one
again (it stands by), SIGTERM the leader and time the hand-over the same way. Target (issue 11): a takeover
within 10 s. The clock starts at the signal, so the figures include the lease left to run, the standby's next
look and the new leader's start.
"""

from __future__ import annotations

import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedgate.common.yaml import dump_yaml
from gateway.app.config import REPO_POLICIES
from gateway.demo.pgcluster import PgCluster, PostgresUnavailable, start_cluster
from gateway.identity.ca import init_ca
from gateway.identity.principal import Principal
from gateway.transport.client import FederationClient
from gateway.trust.credentials import Credentials

TARGET_S = 10.0
LEASE_S = 6.0


@dataclass
class TakeoverResult:
    rounds: int
    kill_s: list[float] = field(default_factory=list)
    sigterm_s: list[float] = field(default_factory=list)
    skipped: str = ""

    def to_json(self) -> dict[str, Any]:
        def summary(values: list[float]) -> dict[str, float]:
            return {"median_s": statistics.median(values), "max_s": max(values)} if values else {}

        return {
            "lease_s": LEASE_S,
            "target_s": TARGET_S,
            "rounds": self.rounds,
            "kill_9": {"runs_s": self.kill_s, **summary(self.kill_s)},
            "sigterm": {"runs_s": self.sigterm_s, **summary(self.sigterm_s)},
            **({"skipped": self.skipped} if self.skipped else {}),
        }


def _free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


class _Gateway:
    def __init__(self, root: Path, name: str, store: str, admin: Credentials) -> None:
        self.address = _free_address()
        self.config = root / f"{name}.yaml"
        self.ready = root / f"{name}.ready"
        self.log = root / f"{name}.log"
        self.admin = admin
        self.process: subprocess.Popen[bytes] | None = None
        self.config.write_text(
            dump_yaml(
                {
                    "apiVersion": "fedgate.io/v1",
                    "kind": "Gateway",
                    "federation": "bench",
                    "listen": self.address,
                    "tls": {"ca": "gw/ca.pem", "cert": "gw/cert.pem", "key": "gw/key.pem"},
                    "authority": "ca",
                    "store": store,
                    "policy": str(REPO_POLICIES / "federation.yaml"),
                    "leader_lease_s": LEASE_S,
                }
            )
        )

    def start(self) -> None:
        self.ready.unlink(missing_ok=True)
        command = [sys.executable, "-m", "fedgate.cli", "gateway", "run", "--config", str(self.config)]
        self.process = subprocess.Popen(
            [*command, "--ready-file", str(self.ready)], stdout=subprocess.DEVNULL, stderr=self.log.open("ab")
        )
        _until(self.ready.exists, 30, f"{self.config.stem} to listen ({self.log})")

    def leads(self) -> bool:
        with FederationClient(self.address, self.admin, timeout=1) as client:
            return client.leads(timeout=1)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)
        self.process.wait(30)


def _until(check: Any, timeout: float, what: str) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if check():
            return time.monotonic() - began
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def run_takeover_benchmark(root: Path, rounds: int = 3) -> TakeoverResult:
    result = TakeoverResult(rounds)
    try:
        cluster = start_cluster(PgCluster)
    except (PostgresUnavailable, RuntimeError) as exc:
        result.skipped = f"no PostgreSQL here: {exc}"
        return result
    gateways: list[_Gateway] = []
    try:
        ca = init_ca(root / "ca", "bench")
        ca.issue_server(root / "gw")
        admin = Credentials.from_dir(ca.issue(Principal.admin("bench", "root"), root / "admin"))
        leader, standby = (_Gateway(root, name, cluster.url(), admin) for name in ("first", "second"))
        gateways = [leader, standby]
        leader.start()
        _until(leader.leads, 30, "the first gateway to lead")
        standby.start()
        for _ in range(rounds):
            time.sleep(LEASE_S / 3)  # a renewal in between: the kill lands anywhere in the renewal period
            began = time.monotonic()
            leader.signal(signal.SIGKILL)
            _until(standby.leads, 60, "the standby to take over")
            result.kill_s.append(time.monotonic() - began)
            leader.start()  # stands by
            began = time.monotonic()
            standby.signal(signal.SIGTERM)
            _until(leader.leads, 60, "the hand-over on SIGTERM")
            result.sigterm_s.append(time.monotonic() - began)
            standby.start()
    finally:
        for gateway in gateways:
            if gateway.process is not None and gateway.process.poll() is None:
                gateway.signal(signal.SIGTERM)
        cluster.destroy()
    return result


def render(result: TakeoverResult) -> str:
    if result.skipped:
        return f"leader takeover: skipped ({result.skipped})"
    data = result.to_json()
    kill, term = data["kill_9"], data["sigterm"]
    verdict = "meets" if kill["max_s"] <= TARGET_S else "misses"
    return "\n".join(
        [
            f"leader takeover on PostgreSQL, two gateways, lease {LEASE_S:g} s, {result.rounds} rounds:",
            f"  kill -9 of the leader -> the standby leads: median {kill['median_s']:.1f} s, max {kill['max_s']:.1f} s "
            f"({verdict} the {TARGET_S:g} s target)",
            f"  SIGTERM of the leader -> the standby leads: median {term['median_s']:.1f} s, max {term['max_s']:.1f} s",
        ]
    )
