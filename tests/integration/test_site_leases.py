"""Site leases with real agent processes and real time (a 1.5 s lease): an agent killed with -9 or stopped with
SIGSTOP past its lease has its attempt declared LOST (SITE_LEASE_EXPIRED) and run again on another site; the
old attempt is fenced by its wrapper first, so the two never run at the same moment (each attempt writes its
own heartbeats, on the machine's monotonic clock); an agent that comes back is live again and runs nothing
stale; a restarted gateway declares nothing lost before its grace period is over."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.jobs.model import JobSpec, JobState, Resources, StackRun
from tests.integration.harness import (
    AgentProcess,
    GatewayHandle,
    LoopThread,
    Pki,
    start_test_gateway,
    wait_for_capacity,
)
from tests.waiting import eventually

LEASE_S = 1.5
LEASE: dict[str, object] = {"site_lease_s": LEASE_S, "report_interval_s": 0.3, "restart_grace_s": 0.5}
POOLS = [{"class": "ascend-910b", "cards": 1, "offered": 1, "cards_per_node": 1}]
# The job: appends a heartbeat (CLOCK_MONOTONIC, shared by every process of the machine) every 20 ms, forever.
JOB = (
    "import os, time\n"
    "with open('beats', 'a') as out:\n"
    "    while True:\n"
    "        out.write(f'{time.monotonic()}\\n'); out.flush(); time.sleep(0.02)\n"
)


class Agent(AgentProcess):
    """One site agent as its own process (local backend), which the test kills, stops and resumes."""

    def __init__(self, gateway: GatewayHandle, root: Path, site: str) -> None:
        super().__init__(gateway, root, site, POOLS, report_interval_s=0.3)

    def beats(self, job_id: str, epoch: int) -> list[float]:
        path = self.jobs / job_id / str(epoch) / "beats"
        text = path.read_text() if path.exists() else ""
        return [float(line) for line in text.splitlines() if line.strip()]

    def running_groups(self) -> list[int]:
        groups = []
        for leader in self.jobs.glob("*/*/leader.json"):
            with contextlib.suppress(ValueError, KeyError, OSError):
                pid = int(json.loads(leader.read_text())["pid"])
                if os.path.exists(f"/proc/{pid}") and _state(pid) != "Z":
                    groups.append(pid)
        return groups

    def end(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)
        for group in self.running_groups():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


@pytest.fixture
def leased(pki: Pki, loop: LoopThread, tmp_path: Path) -> Iterator[GatewayHandle]:
    handle = start_test_gateway(pki, tmp_path, loop, extra=LEASE)
    yield handle
    handle.stop()


@pytest.fixture
def agents(leased: GatewayHandle, tmp_path: Path) -> Iterator[dict[str, Agent]]:
    made = {name: Agent(leased, tmp_path / name, name) for name in ("centre-a", "centre-b")}
    yield made
    for agent in made.values():
        agent.end()


def spec() -> JobSpec:
    return JobSpec(
        "deepsea-ai", "llama-sft", Resources("ascend-910b", None, 1), (StackRun("cann", "", ("python3", "-c", JOB)),)
    )


def _run_on_a_then_b(gateway: GatewayHandle, agents: dict[str, Agent], fault: int) -> tuple[str, list[float]]:
    """Start a job on centre-a, start centre-b, hit centre-a's agent with `fault`; the job must be LOST at a and
    run again at b, and a's attempt must have stopped before b's started. Returns the job id and a's beats."""
    a, b = agents["centre-a"], agents["centre-b"]
    a.start()
    wait_for_capacity(gateway, "centre-a")
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        job_id = alice.create_job(spec()).job_id
        eventually(lambda: a.beats(job_id, 1), what="the first attempt to beat at centre-a")
        b.start()
        wait_for_capacity(gateway, "centre-b")
        a.signal(fault)
        eventually(lambda: b.beats(job_id, 2), timeout=30, what="the second attempt to beat at centre-b")
        job = alice.get_job(job_id)
        assert job.epoch == 2 and job.sites == ("centre-b",)
        events = gateway.running.core.store.events(job_id)
        lost = [e for e in events if e.state == JobState.LOST]
        assert len(lost) == 1 and lost[0].site == "centre-a" and "lease" in lost[0].message
        assert not any(e.state == JobState.FAILED for e in events)
        first = a.beats(job_id, 1)
        assert first and max(first) < min(b.beats(job_id, 2)), "the two attempts ran at the same moment"
        return job_id, first


def test_an_agent_killed_with_sigkill_has_its_attempt_lost_and_run_again_on_another_site_never_beside_it(
    leased: GatewayHandle, agents: dict[str, Agent]
) -> None:
    job_id, _ = _run_on_a_then_b(leased, agents, signal.SIGKILL)
    assert agents["centre-a"].running_groups() == []  # the wrapper fenced it: nothing of the attempt lives on
    assert (agents["centre-a"].jobs / job_id / "1" / "fenced").exists()
    view = leased.running.core.registry.view("centre-a")
    assert view.liveness == "lost" and "lease" in view.liveness_reason


def test_an_agent_stopped_past_its_lease_and_resumed_never_runs_its_attempt_beside_the_replacement(
    leased: GatewayHandle, agents: dict[str, Agent]
) -> None:
    a = agents["centre-a"]
    job_id, first = _run_on_a_then_b(leased, agents, signal.SIGSTOP)
    a.signal(signal.SIGCONT)
    # Back: it reconnects, is live again, and runs nothing of the old attempt.
    eventually(lambda: leased.running.core.registry.view("centre-a").liveness == "live", what="centre-a live again")
    eventually(lambda: a.running_groups() == [], what="nothing of the old attempt running at centre-a")
    assert a.beats(job_id, 1) == first  # it never beat again after the fence
    with leased.client(leased.pki.user("deepsea-ai", "alice")) as alice:
        job = alice.get_job(job_id)
        assert job.state == JobState.RUNNING and job.epoch == 2 and job.sites == ("centre-b",)


def test_a_restarted_gateway_declares_nothing_lost_before_its_grace_period(
    pki: Pki, loop: LoopThread, tmp_path: Path
) -> None:
    grace = 4.0
    gateway = start_test_gateway(pki, tmp_path, loop, extra=LEASE)
    a = Agent(gateway, tmp_path / "centre-a", "centre-a")
    try:
        a.start()
        wait_for_capacity(gateway, "centre-a")
        with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
            job_id = alice.create_job(spec()).job_id
            eventually(lambda: a.beats(job_id, 1), what="the attempt to beat")
        gateway.stop()
        a.end()  # the site never comes back
        before = datetime.now(UTC)
        gateway = start_test_gateway(pki, tmp_path, loop, extra={**LEASE, "restart_grace_s": grace})
        store = gateway.running.core.store
        eventually(
            lambda: any(e.state == JobState.LOST for e in store.events(job_id)), timeout=30, what="the attempt LOST"
        )
        (lost,) = [e for e in store.events(job_id) if e.state == JobState.LOST]
        # The lease alone (1.5 s, and the site silent since before the restart) would have declared it at once.
        assert (lost.time - before).total_seconds() >= grace
    finally:
        a.end()
        gateway.stop()
