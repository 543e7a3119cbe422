"""The gateway on PostgreSQL end to end: a real gateway with a `postgresql://` store, a real agent running a
job, and a restart of the gateway on the same database that finds everything where it was left."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.jobs.model import JobSpec, JobState, Resources, StackRun
from tests.integration.harness import LoopThread, Pki, start_test_agent, start_test_gateway, wait_for_capacity
from tests.waiting import eventually

pytestmark = pytest.mark.services

QUICK = JobSpec(
    tenant="deepsea-ai",
    project="llama-sft",
    resources=Resources("ascend-910b", None, 2),
    runs=(StackRun("cann", "", ("python3", "-c", "print('done')")),),
)


def test_a_gateway_on_postgresql_runs_a_job_and_finds_it_after_a_restart(
    pki: Pki, loop: LoopThread, tmp_path: Path, pg_url: str
) -> None:
    gateway = start_test_gateway(pki, tmp_path, loop, store=pg_url)
    port = gateway.running.port
    pools = [{"class": "ascend-910b", "cards": 8, "offered": 8, "cards_per_node": 8}]
    agent = start_test_agent(gateway, "centre-a", pools, tmp_path / "agent")
    try:
        assert type(gateway.running.core.store).__name__ == "PostgresStore"
        wait_for_capacity(gateway, "centre-a")
        with gateway.client(pki.user("deepsea-ai", "alice")) as alice:
            job = alice.create_job(QUICK, request_id="first")
            eventually(lambda: alice.get_job(job.job_id).state == JobState.SUCCEEDED, timeout=30, what="the job's end")
        gateway.stop()
        gateway = start_test_gateway(pki, tmp_path, loop, port=port, store=pg_url)
        with gateway.client(pki.user("deepsea-ai", "alice")) as alice:
            final = alice.get_job(job.job_id)
            assert (final.state, final.attempt, final.epoch, final.exit_code) == (JobState.SUCCEEDED, 1, 1, 0)
            assert alice.create_job(QUICK, request_id="first").job_id == job.job_id  # the key survived too
            receipts = alice.list_usage_receipts(datetime(1970, 1, 1, tzinfo=UTC))
            assert [(r.record.job_id, r.record.state) for r in receipts if r.record] == [
                (job.job_id, JobState.SUCCEEDED)
            ]
            second = alice.create_job(QUICK)  # the restarted gateway schedules on PostgreSQL too
            eventually(
                lambda: alice.get_job(second.job_id).state == JobState.SUCCEEDED, timeout=30, what="a second job's end"
            )
        states = [e.state for e in gateway.running.core.store.events(job.job_id)]
        assert states == [JobState.QUEUED, JobState.DISPATCHED, JobState.RUNNING, JobState.SUCCEEDED]
        with gateway.client(pki.admin()) as admin:
            assert admin.audit_events()  # the trust layer's log is on PostgreSQL as well
    finally:
        agent.stop()
        gateway.stop()
