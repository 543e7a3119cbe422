"""A Slurm site through a gateway crash: real processes end to end.

The gateway runs as `fedgate gateway run`, the site agent as `fedgate agent run` on the slurm backend against
the real single-node Slurm of `tests.slurmcluster`. Jobs run as Slurm batch jobs while the gateway is killed
with SIGKILL and started again on the same port and store. Every job must finish and be reported exactly
once, with exactly one signed usage receipt each, and every receipt must verify (`fedgate usage`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agents.journal.sqlite import SqliteJournal
from fedgate.common.yaml import dump_yaml
from gateway.app.config import REPO_POLICIES
from gateway.identity.ca import init_ca
from gateway.identity.principal import Principal
from gateway.jobs.model import JobSpec, JobState, Resources, StackRun
from gateway.store import open_store
from gateway.transport.client import FederationClient
from gateway.trust.credentials import Credentials
from tests.slurmcluster import SlurmCluster
from tests.waiting import eventually

FEDERATION = "e2e"
SITE = "centre-s"
JOBS = 4
JOB_SECONDS = 6


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fedgate(*args: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "fedgate.cli", *args],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("FEDGATE_")},
    )


def _until(check: Callable[[], object], timeout: float, what: str, logs: Path) -> None:
    def tails() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs.glob("*.log")))

    eventually(check, timeout, what, detail=tails, poll_s=0.2)


class Federation:
    """The files and processes of a one-site federation on loopback."""

    def __init__(self, root: Path, cluster: SlurmCluster) -> None:
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir()
        ca = init_ca(root / "ca", FEDERATION)
        ca.issue_server(root / "gateway", hosts=("localhost", "127.0.0.1"))
        self.admin = Credentials.from_dir(ca.issue(Principal.admin(FEDERATION, "root"), root / "admin"))
        self.admin_dir = root / "admin"
        self.alice = Credentials.from_dir(ca.issue(Principal.user(FEDERATION, "deepsea-ai", "alice"), root / "alice"))
        site_dir = ca.issue(Principal.site(FEDERATION, SITE), root / "site")
        self.address = f"127.0.0.1:{_free_port()}"
        self.gateway_config = root / "gateway" / "gateway.yaml"
        self.gateway_config.write_text(
            dump_yaml(
                {
                    "apiVersion": "fedgate.io/v1",
                    "kind": "Gateway",
                    "federation": FEDERATION,
                    "listen": self.address,
                    "tls": {"ca": "ca.pem", "cert": "cert.pem", "key": "key.pem"},
                    "authority": str(root / "ca"),
                    "store": "sqlite:///gateway.db",
                    "policy": str(REPO_POLICIES / "federation.yaml"),
                    "report_interval_s": 1,
                    "schedule_period_s": 0.5,
                }
            )
        )
        self.db = root / "gateway" / "gateway.db"
        self.agent_config = site_dir / "agent.yaml"
        self.agent_config.write_text(
            dump_yaml(
                {
                    "apiVersion": "fedgate.io/v1",
                    "kind": "Agent",
                    "site": SITE,
                    "gateway": self.address,
                    "tls": {"ca": "ca.pem", "cert": "cert.pem", "key": "key.pem"},
                    "backend": {
                        "type": "slurm",
                        "partition": cluster.partition,
                        "slurm_conf": str(cluster.conf),
                        "workdir": str(root / "jobs"),
                        "poll_interval_s": 0.3,
                    },
                    "state_dir": "state",
                    "report_interval_s": 1,
                    "pools": [{"class": "nvidia-h100", "cards": 4, "offered": 4, "cards_per_node": 4}],
                }
            )
        )
        self.gateway: subprocess.Popen[bytes] | None = None
        self.agent: subprocess.Popen[bytes] | None = None

    def start_gateway(self) -> None:
        ready = self.root / "gateway" / "ready"
        ready.unlink(missing_ok=True)
        self.gateway = _fedgate(
            "gateway",
            "run",
            "--config",
            str(self.gateway_config),
            "--ready-file",
            str(ready),
            log=self.logs / "gateway.log",
        )
        _until(ready.exists, 30, "the gateway to listen", self.logs)

    def kill_gateway(self) -> None:
        assert self.gateway is not None
        self.gateway.send_signal(signal.SIGKILL)
        self.gateway.wait(timeout=10)

    def start_agent(self) -> None:
        self.agent = _fedgate("agent", "run", "--config", str(self.agent_config), log=self.logs / "agent.log")

    def client(self, credentials: Credentials) -> FederationClient:
        return FederationClient(self.address, credentials, timeout=10)

    def stop(self) -> None:
        for process in (self.agent, self.gateway):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


@pytest.fixture
def federation(tmp_path: Path, slurm_cluster: SlurmCluster) -> Iterator[Federation]:
    federation = Federation(tmp_path, slurm_cluster)
    try:
        yield federation
    finally:
        federation.stop()


def _site_ready(federation: Federation) -> bool:
    with federation.client(federation.admin) as admin:
        return any(s.name == SITE and s.connected and s.pools for s in admin.list_sites())


def test_jobs_on_slurm_survive_a_gateway_crash_each_reported_once_with_one_verified_receipt(
    federation: Federation, slurm_cluster: SlurmCluster
) -> None:
    federation.start_gateway()
    federation.start_agent()
    _until(lambda: _site_ready(federation), 60, "the Slurm site to report capacity", federation.logs)
    spec = JobSpec(
        tenant="deepsea-ai",
        project="llama-sft",
        resources=Resources("nvidia-h100", None, 1),
        runs=(StackRun("cuda", "", ("sh", "-c", f"echo start; sleep {JOB_SECONDS}; echo done")),),
    )
    with federation.client(federation.alice) as alice:
        job_ids = [alice.create_job(spec, request_id=f"e2e-{i}").job_id for i in range(JOBS)]

        def all_running() -> bool:
            return all(alice.get_job(j).state == JobState.RUNNING for j in job_ids)

        _until(all_running, 60, "every job to run on Slurm", federation.logs)
    for job_id in job_ids:
        assert slurm_cluster.jobs_named(f"fedgate.{job_id}.1"), f"{job_id} runs as a Slurm batch job"

    federation.kill_gateway()  # SIGKILL: no goodbye, no flush; the jobs go on under Slurm

    def all_done_under_slurm() -> bool:
        outputs = [federation.root / "jobs" / job_id / "1" / "output.log" for job_id in job_ids]
        return all(path.exists() and path.read_text().endswith("done\n") for path in outputs)

    # The jobs end while no gateway is up: their ends wait in the agent's journal and are replayed.
    _until(all_done_under_slurm, 60, "the jobs to end under Slurm while the gateway is down", federation.logs)
    journal = SqliteJournal.in_directory(federation.agent_config.parent / "state")  # the agent's, read beside it

    def all_ends_journaled() -> bool:
        return {u.job_id for u in journal.pending() if u.state.is_final} >= set(job_ids)

    _until(all_ends_journaled, 30, "the agent to journal every end", federation.logs)
    federation.start_gateway()

    with federation.client(federation.alice) as alice:

        def all_ended() -> bool:
            return all(alice.get_job(j).state.terminal for j in job_ids)

        _until(all_ended, 90, "every job to finish after the restart", federation.logs)
        for job_id in job_ids:
            job = alice.get_job(job_id)
            assert job.state == JobState.SUCCEEDED, (job_id, job.reasons)
            assert (job.attempt, job.epoch) == (1, 1), "the gateway restart did not start a second attempt"
            assert len(slurm_cluster.jobs_named(f"fedgate.{job_id}.1")) == 1, "never submitted twice"

    with contextlib.closing(sqlite3.connect(federation.db)) as db:
        rows = db.execute("SELECT job_id FROM receipts").fetchall()
    assert sorted(r[0] for r in rows) == sorted(job_ids), "exactly one usage receipt per job"
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedgate.cli",
            "usage",
            "--gateway",
            federation.address,
            "--creds",
            str(federation.admin_dir),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert report.returncode == 0, report.stderr
    (row,) = json.loads(report.stdout)  # every receipt verified (else exit 1), totalled in one row
    assert (row["tenant"], row["site"], row["receipts"]) == ("deepsea-ai", SITE, JOBS)
    assert row["card_hours"] >= JOBS * JOB_SECONDS / 3600

    federation.stop()
    store = open_store(f"sqlite:///{federation.db}")
    try:
        for job_id in job_ids:
            states = [e.state for e in store.events(job_id)]
            # Reported exactly once: one RUNNING, one SUCCEEDED, in order, whatever the agent had to replay.
            assert states == [JobState.QUEUED, JobState.DISPATCHED, JobState.RUNNING, JobState.SUCCEEDED], states
    finally:
        store.close()
