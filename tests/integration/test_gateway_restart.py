"""The gateway goes away and comes back: jobs keep running at the site and end exactly once, recorded."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from gateway.jobs.model import JobSpec, JobState, Resources, StackRun
from tests.integration.harness import LoopThread, Pki, start_test_agent, start_test_gateway, wait_for_capacity
from tests.waiting import eventually

SLEEPER = JobSpec(
    tenant="deepsea-ai",
    project="llama-sft",
    resources=Resources("ascend-910b", None, 2),
    runs=(StackRun("cann", "", ("python3", "-c", "import time; time.sleep(2)")),),
)


def test_a_job_running_while_the_gateway_restarts_ends_once_and_is_recorded(
    pki: Pki, loop: LoopThread, tmp_path: Path
) -> None:
    gateway = start_test_gateway(pki, tmp_path, loop)
    port = gateway.running.port
    pools = [{"class": "ascend-910b", "cards": 8, "offered": 8, "cards_per_node": 8}]
    agent = start_test_agent(gateway, "centre-a", pools, tmp_path / "agent")
    try:
        wait_for_capacity(gateway, "centre-a")
        with gateway.client(pki.user("deepsea-ai", "alice")) as alice:
            job = alice.create_job(SLEEPER)
            eventually(lambda: alice.get_job(job.job_id).state == JobState.RUNNING, what="the job to run")
        gateway.stop()  # the job goes on at the site; its end is journalled by the agent
        gateway = start_test_gateway(pki, tmp_path, loop, port=port)
        with gateway.client(pki.user("deepsea-ai", "alice")) as alice:
            eventually(lambda: alice.get_job(job.job_id).state == JobState.SUCCEEDED, timeout=30, what="the job's end")
            final = alice.get_job(job.job_id)
        assert (final.attempt, final.epoch, final.exit_code) == (1, 1, 0)
        states = [e.state for e in gateway.running.core.store.events(job.job_id)]
        assert states == [JobState.QUEUED, JobState.DISPATCHED, JobState.RUNNING, JobState.SUCCEEDED]
        with gateway.client(pki.user("deepsea-ai", "alice")) as alice:
            receipts = alice.list_usage_receipts(datetime(1970, 1, 1, tzinfo=UTC))
        assert [(r.record.job_id, r.record.state) for r in receipts if r.record] == [(job.job_id, JobState.SUCCEEDED)]
    finally:
        agent.stop()
        gateway.stop()
