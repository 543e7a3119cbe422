"""The agent survives its own restarts and the gateway's absence: its SQLite journal replays what the gateway has
not acknowledged, an engine that keeps jobs keeps them while the agent is stopped and the restarted agent
re-attaches them, and `fedgate agent run` drains on SIGTERM: no new launches, final updates flushed, exit 0."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import yaml

from agents.core.config import load_agent_config
from agents.journal.sqlite import SqliteJournal
from agents.transport.connection import run_agent
from gateway.jobs.model import JobSpec, JobState, Resources, StackRun
from tests.integration.harness import (
    GatewayHandle,
    LoopThread,
    Pki,
    start_test_agent,
    start_test_gateway,
    wait_for_capacity,
)
from tests.unit.agents.fakes import FakeBackend, KeepingBackend
from tests.waiting import eventually

BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
POOLS = [{"class": "ascend-910b", "cards": 8, "offered": 8, "cards_per_node": 8}]


def job_spec(command: tuple[str, ...]) -> JobSpec:
    return JobSpec("deepsea-ai", "llama-sft", Resources("ascend-910b", None, 2), (StackRun("cann", "", command),))


def receipts(gateway: GatewayHandle, pki: Pki) -> list[tuple[str, JobState]]:
    with gateway.client(pki.admin()) as admin:
        return [(r.record.job_id, r.record.state) for r in admin.list_usage_receipts(BEGINNING) if r.record]


def test_restarted_agent_replays_updates_the_gateway_never_acknowledged(
    pki: Pki, loop: LoopThread, tmp_path: Path
) -> None:
    gateway = start_test_gateway(pki, tmp_path, loop)
    port = gateway.running.port
    agent = start_test_agent(gateway, "centre-a", POOLS, tmp_path / "agent")
    journal_path = tmp_path / "agent" / "state" / "journal.db"
    try:
        wait_for_capacity(gateway, "centre-a")
        with gateway.client(pki.user("deepsea-ai", "alice")) as alice:
            job = alice.create_job(job_spec(("python3", "-c", "import time; time.sleep(1)")))
            eventually(lambda: alice.get_job(job.job_id).state == JobState.RUNNING, what="the job to run")
        gateway.stop()
        # The job ends while the gateway is away: its end waits in the agent's journal, and the agent stops.
        eventually(
            lambda: any(u.state.is_final for u in SqliteJournal(journal_path).pending()), what="the end journaled"
        )
        agent.stop()
        gateway = start_test_gateway(pki, tmp_path, loop, port=port)
        agent = start_test_agent(gateway, "centre-a", POOLS, tmp_path / "agent")  # same state_dir
        with gateway.client(pki.user("deepsea-ai", "alice")) as alice:
            eventually(lambda: alice.get_job(job.job_id).state == JobState.SUCCEEDED, what="the replayed end")
        eventually(lambda: SqliteJournal(journal_path).pending() == [], what="the journal acknowledged")
        assert receipts(gateway, pki) == [(job.job_id, JobState.SUCCEEDED)]
        states = [e.state for e in gateway.running.core.store.events(job.job_id)]
        assert states == [JobState.QUEUED, JobState.DISPATCHED, JobState.RUNNING, JobState.SUCCEEDED]
    finally:
        agent.stop()
        gateway.stop()


def run_in_loop(gateway: GatewayHandle, config_path: Path, backend: FakeBackend) -> tuple[asyncio.Event, object]:
    async def make_event() -> asyncio.Event:
        return asyncio.Event()

    stop = gateway.loop.run(make_event())
    agent = run_agent(load_agent_config(config_path), stop, backend=backend)
    task = asyncio.run_coroutine_threadsafe(agent, gateway.loop.loop)
    return stop, task


def test_engine_keeps_the_job_while_the_agent_restarts_and_its_end_is_reported_once(
    gateway: GatewayHandle, tmp_path: Path
) -> None:
    start_test_agent(gateway, "centre-a", POOLS, tmp_path / "agent").stop()  # writes the agent's config
    config = tmp_path / "agent" / "agent.yaml"
    backend = KeepingBackend()
    stop, task = run_in_loop(gateway, config, backend)
    wait_for_capacity(gateway, "centre-a")
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        job = alice.create_job(job_spec(("train",)))
        eventually(lambda: alice.get_job(job.job_id).state == JobState.RUNNING, what="the job to run")
        gateway.loop.loop.call_soon_threadsafe(stop.set)
        task.result(15)  # type: ignore[attr-defined]
        assert backend.handles[(job.job_id, 1)].cancel_graces == []  # the agent left it to the engine
        assert alice.get_job(job.job_id).state == JobState.RUNNING  # and the gateway did not evict it

        stop, task = run_in_loop(gateway, config, backend)  # the restarted agent re-attaches it
        gateway.loop.loop.call_soon_threadsafe(backend.finish, job.job_id, 1, 0)
        eventually(lambda: alice.get_job(job.job_id).state == JobState.SUCCEEDED, what="the job's end")
    gateway.loop.loop.call_soon_threadsafe(stop.set)
    task.result(15)  # type: ignore[attr-defined]
    assert len(backend.launched) == 1  # never launched twice
    assert receipts(gateway, gateway.pki) == [(job.job_id, JobState.SUCCEEDED)]


def test_sigterm_drains_the_agent_flushes_its_journal_and_exits_zero(gateway: GatewayHandle, tmp_path: Path) -> None:
    creds = gateway.pki.site("centre-a")
    workdir = tmp_path / "agent"
    workdir.mkdir()
    config = workdir / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "fedgate.io/v1",
                "kind": "Agent",
                "site": "centre-a",
                "gateway": gateway.address,
                "tls": {k: str(creds / f"{k}.pem") for k in ("ca", "cert", "key")},
                "backend": {"type": "local", "workdir": "jobs"},
                "report_interval_s": 0.5,
                "cancel_grace_s": 1,
                "pools": POOLS,
            }
        )
    )
    agent = subprocess.Popen(
        [sys.executable, "-m", "fedgate.cli", "agent", "run", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_capacity(gateway, "centre-a")
        with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
            job = alice.create_job(job_spec(("python3", "-c", "import time; time.sleep(60)")))
            eventually(lambda: alice.get_job(job.job_id).state == JobState.RUNNING, what="the job to run")
            agent.send_signal(signal.SIGTERM)
            _, err = agent.communicate(timeout=20)
            assert agent.returncode == 0, err
            # The local backend cannot keep jobs without the agent: it stopped it, reported it and was heard.
            requeued = alice.get_job(job.job_id)
            (usage,) = alice.usage(BEGINNING)  # the preempted attempt's card-hours count too
        assert requeued.state == JobState.QUEUED and requeued.attempt == 1
        assert usage.attempts == 1 and usage.card_hours > 0
        assert "received SIGTERM" in err
        assert SqliteJournal(workdir / "state" / "journal.db").pending() == []
        assert receipts(gateway, gateway.pki) == [(job.job_id, JobState.PREEMPTED)]
        events = [e.state for e in gateway.running.core.store.events(job.job_id)]
        assert JobState.PREEMPTED in events
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(5)
