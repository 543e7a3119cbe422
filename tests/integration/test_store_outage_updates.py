"""A site's job update the store cannot make durable (the database away for a moment, a full disk, a gateway
that no longer leads) is not refused: the gateway ends the stream with UNAVAILABLE, gives no answer, and the
agent sends the update again on its next stream, so the job still ends. Before, the update got a Rejection the
agent obeyed by dropping it, and the job stayed RUNNING for good (found by the chaos catalogue's PostgreSQL
restart). The store's failure is injected into the real gateway's store object (a real agent, real mTLS)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.errors import StoreFull, StoreUnavailable, Unavailable
from gateway.jobs.model import JobSpec, JobState, Resources, StackRun
from tests.integration.harness import GatewayHandle, start_test_agent, wait_for_capacity
from tests.waiting import eventually

SPEC = JobSpec(
    "deepsea-ai", "llama-sft", Resources("ascend-910b", None, 1), (StackRun("cann", "", ("python3", "-c", "pass")),)
)


@pytest.mark.parametrize(
    "failure",
    [
        StoreUnavailable("disk I/O error"),
        StoreFull("database or disk is full"),
        Unavailable("the PostgreSQL store failed: terminating connection", reason="STORE_UNREACHABLE"),
    ],
    ids=["store unavailable", "store full", "store unreachable"],
)
def test_an_update_the_store_could_not_keep_is_sent_again_and_the_job_ends(
    gateway: GatewayHandle, tmp_path: Path, failure: Exception
) -> None:
    store = gateway.running.core.store
    original = store.save_transitions
    failed: list[str] = []

    def failing_once(batch: Any, *args: Any, **kwargs: Any) -> Any:
        if not failed and any(job.state == JobState.SUCCEEDED for job, _, _ in batch):
            failed.append(batch[0][0].job_id)
            raise failure
        return original(batch, *args, **kwargs)

    store.save_transitions = failing_once  # type: ignore[method-assign]
    pools = [{"class": "ascend-910b", "cards": 2, "offered": 2, "cards_per_node": 2}]
    agent = start_test_agent(gateway, "centre-a", pools, tmp_path / "agent")
    try:
        wait_for_capacity(gateway, "centre-a")
        with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
            job = alice.create_job(SPEC)
            eventually(lambda: failed == [job.job_id], timeout=30, what="the store to fail the end once")
            eventually(
                lambda: alice.get_job(job.job_id).state == JobState.SUCCEEDED,
                timeout=30,
                what="the end, sent again on the agent's next stream",
            )
            states = [e.state for e in store.events(job.job_id)]
            assert states == [JobState.QUEUED, JobState.DISPATCHED, JobState.RUNNING, JobState.SUCCEEDED]
    finally:
        agent.stop()
