"""WatchJob resumes from the sequence a client kept, over a real gateway and a real agent: every message is a
recorded event (no made-up sequence 0), a watch opened again after a sequence gets exactly the events after it,
and the client library carries a watch across a dropped connection with no event twice and none lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from fedgate.v1 import job_service_pb2, job_service_pb2_grpc
from gateway.jobs.model import JobState
from gateway.transport.convert import state_from_proto
from tests.chaos.proxy import LinkProxy
from tests.integration.harness import AgentHandle, GatewayHandle, start_test_agent, wait_for_capacity
from tests.integration.test_job_lifecycle import held_until, spec
from tests.security.support import ALICE, assert_refused, client_of, creds_channel

WATCH_TIMEOUT_S = 30.0


@pytest.fixture
def site(gateway: GatewayHandle, tmp_path: Path) -> Iterator[AgentHandle]:
    pool = [{"class": "ascend-910b", "cards": 8, "offered": 4, "cards_per_node": 8}]
    agent = start_test_agent(gateway, "centre-a", pool, tmp_path / "a")
    wait_for_capacity(gateway, "centre-a")
    yield agent
    agent.stop()


def watch(channel: grpc.Channel, job_id: str, after: int | None = None) -> Any:
    """The WatchJob stream (iterable, and `cancel()` drops it)."""
    request = job_service_pb2.WatchJobRequest(job_id=job_id)
    if after is not None:
        request.after_sequence = after
    return job_service_pb2_grpc.JobServiceStub(channel).WatchJob(request, timeout=WATCH_TIMEOUT_S)


def recorded(gateway: GatewayHandle, job_id: str) -> list[tuple[int, JobState]]:
    return [(e.sequence, e.state) for e in gateway.running.core.store.events(job_id)]


def test_a_watch_opened_again_after_a_kept_sequence_gets_exactly_the_events_it_missed(
    gateway: GatewayHandle, site: AgentHandle
) -> None:
    release = site.workdir / "release"
    with gateway.client(gateway.pki.user(*ALICE)) as alice:
        job = alice.create_job(spec(held_until(release)))
    with creds_channel(gateway, gateway.pki.user(*ALICE)) as channel:
        first = watch(channel, job.job_id)
        latest = next(first)
        assert latest.replayed and latest.event.sequence > 0  # the latest recorded event, not a made-up one
        kept, state = latest.event.sequence, state_from_proto(latest.job.state)
        while state != JobState.RUNNING:  # read on until the job runs, then drop the stream
            reply = next(first)
            assert reply.event.sequence > kept and not reply.replayed
            kept, state = reply.event.sequence, state_from_proto(reply.job.state)
        first.cancel()
        release.touch()  # the job ends while nobody watches
        resumed = [(r.event.sequence, r.event.state, r.replayed) for r in watch(channel, job.job_id, after=kept)]
        history = recorded(gateway, job.job_id)
        assert [(q, state_from_proto(s)) for q, s, _ in resumed] == [(q, s) for q, s in history if q > kept]
        assert state_from_proto(resumed[-1][1]) == JobState.SUCCEEDED
        # From 0: the whole history; after the last event of an ended job: nothing, and the stream ends.
        assert [r.event.sequence for r in watch(channel, job.job_id, after=0)] == [q for q, _ in history]
        assert list(watch(channel, job.job_id, after=history[-1][0])) == []
        assert_refused(lambda: list(watch(channel, job.job_id, after=history[-1][0] + 10**9)), "INVALID_ARGUMENT")


def test_the_client_resumes_a_dropped_watch_with_no_event_twice_and_none_lost(
    gateway: GatewayHandle, site: AgentHandle
) -> None:
    release = site.workdir / "release"
    proxy = LinkProxy(gateway.pki, gateway.address)
    try:
        with client_of(gateway, gateway.pki.user(*ALICE), address=proxy.address) as alice:
            job = alice.create_job(spec(held_until(release)))
            seen: list[tuple[int, JobState]] = []
            for event, current in alice.watch_job(job.job_id, timeout=WATCH_TIMEOUT_S):
                seen.append((event.sequence, event.state))
                if current.state == JobState.RUNNING and proxy.connections == 1:
                    proxy.drop()  # the connection goes while the job runs: the client dials again
                    release.touch()  # and the job ends while the watch is away
        assert proxy.connections >= 2, "the watch was never cut"
    finally:
        proxy.close()
    history = recorded(gateway, job.job_id)
    assert all(q > 0 for q, _ in seen) and len({q for q, _ in seen}) == len(seen)
    assert seen == [(q, s) for q, s in history if q >= seen[0][0]]
    assert seen[-1][1] == JobState.SUCCEEDED
