"""The agent protocol as a second implementation reads it from site.proto: a hand-written agent (the generated
stubs over real mTLS, no fedgate agent code) holds the gateway to each rule: replays acked without effect, a
journal that went back in time caught and reconciled, the gateway's message sequence increasing across a restart,
sequences above 2^63-1 and site-forbidden states refused clearly, and a log stream sent within its credit."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from fedgate.v1 import job_pb2, site_pb2
from gateway.jobs.model import JobState
from gateway.transport.client import FederationClient
from tests.integration.harness import GatewayHandle, LoopThread, Pki, start_test_gateway
from tests.security.support import ALICE, SiteStream, job_update, spec_for, store_state
from tests.waiting import eventually

SITE = "centre-b"


def alice_client(gateway: GatewayHandle) -> FederationClient:
    return gateway.client(gateway.pki.user(*ALICE))


def connect(
    gateway: GatewayHandle, resume_cursor: int = 0, running: tuple[site_pb2.RunningJob, ...] = ()
) -> tuple[SiteStream, site_pb2.Welcome]:
    """A stream of SITE that has said Hello (with this resume cursor and these attempts) and offered 8 cards."""
    stream = SiteStream(gateway, gateway.pki.site(SITE))
    stream.send(
        hello=site_pb2.Hello(
            site=SITE, agent_version="second-implementation", resume_cursor=resume_cursor, running=running
        )
    )
    first = stream.next()
    assert first.WhichOneof("kind") == "welcome"
    stream.report()
    return stream, first.welcome


def answer(stream: SiteStream) -> site_pb2.ConnectResponse:
    """The gateway's answer to the last update: its Ack or its Rejection (commands in between are skipped)."""
    while (reply := stream.next()).WhichOneof("kind") not in {"ack", "rejection"}:
        pass
    return reply


def test_a_replayed_update_is_acked_and_changes_nothing(gateway: GatewayHandle) -> None:
    stream, _ = connect(gateway)
    try:
        with alice_client(gateway) as alice:
            job = alice.create_job(spec_for())
            launch = stream.next_of("launch").launch
            stream.send(job_update=job_update(job.job_id, launch.epoch, job_pb2.JOB_STATE_RUNNING, 1))
            assert answer(stream).ack.sequence == 1
            stream.send(job_update=job_update(job.job_id, launch.epoch, job_pb2.JOB_STATE_SUCCEEDED, 2))
            assert answer(stream).ack.sequence == 2
            before = store_state(gateway)
            # The ack was lost, say: the agent sends both again under their numbers.
            stream.send(job_update=job_update(job.job_id, launch.epoch, job_pb2.JOB_STATE_RUNNING, 1))
            stream.send(job_update=job_update(job.job_id, launch.epoch, job_pb2.JOB_STATE_SUCCEEDED, 2))
            assert [answer(stream).ack.sequence for _ in range(2)] == [1, 2]
            assert store_state(gateway) == before
            assert alice.get_job(job.job_id).state == JobState.SUCCEEDED
    finally:
        stream.close()
    assert gateway.running.core.store.site_cursor(SITE) == 2


def test_a_rolled_back_journal_leaves_no_job_running_for_good(gateway: GatewayHandle) -> None:
    stream, _ = connect(gateway)
    try:
        with alice_client(gateway) as alice:
            kept = alice.create_job(spec_for())
            kept_launch = stream.next_of("launch").launch
            stream.send(job_update=job_update(kept.job_id, kept_launch.epoch, job_pb2.JOB_STATE_RUNNING, 1))
            assert answer(stream).ack.sequence == 1
            forgotten = alice.create_job(spec_for())
            forgotten_launch = stream.next_of("launch").launch
            assert forgotten_launch.job_id == forgotten.job_id
            stream.send(job_update=job_update(forgotten.job_id, forgotten_launch.epoch, job_pb2.JOB_STATE_RUNNING, 2))
            assert answer(stream).ack.sequence == 2
    finally:
        stream.close()
    # The agent's disk is restored from a snapshot taken after update 1: it knows the first job only, its resume
    # cursor is 0 and its next update is numbered 2 again.
    running = (site_pb2.RunningJob(job_id=kept.job_id, epoch=kept_launch.epoch, state=job_pb2.JOB_STATE_RUNNING),)
    stream, welcome = connect(gateway, resume_cursor=0, running=running)
    try:
        assert welcome.last_update_sequence == 2  # where the gateway stands
        with alice_client(gateway) as alice:
            # The attempt the agent no longer knows is LOST and queued again: a new epoch, launched anew.
            relaunch = stream.next_of("launch").launch
            assert (relaunch.job_id, relaunch.epoch > forgotten_launch.epoch) == (forgotten.job_id, True)
            states = [e.state for e in gateway.running.core.store.events(forgotten.job_id)]
            assert JobState.LOST in states
            # The reused number is not a replay: refused with the cursor, never acked and dropped.
            stream.send(job_update=job_update(kept.job_id, kept_launch.epoch, job_pb2.JOB_STATE_SUCCEEDED, 2))
            refused = answer(stream).rejection
            assert (refused.update_sequence, refused.reason, refused.last_update_sequence) == (2, "SEQUENCE_REUSED", 2)
            assert alice.get_job(kept.job_id).state == JobState.RUNNING
            # Renumbered above the cursor, as the rejection says, the same word is applied.
            stream.send(job_update=job_update(kept.job_id, kept_launch.epoch, job_pb2.JOB_STATE_SUCCEEDED, 3))
            assert answer(stream).ack.sequence == 3
            assert alice.get_job(kept.job_id).state == JobState.SUCCEEDED
    finally:
        stream.close()


def test_the_gateways_message_sequence_keeps_increasing_across_a_restart(
    pki: Pki, loop: LoopThread, tmp_path: Path
) -> None:
    gateway = start_test_gateway(pki, tmp_path, loop)
    port = gateway.running.port
    try:
        stream, _ = connect(gateway)
        try:
            with alice_client(gateway) as alice:
                job = alice.create_job(spec_for())
                launched = stream.next_of("launch")
                alice.cancel_job(job.job_id)
                cancelled = stream.next_of("cancel")
                assert 0 < launched.sequence < cancelled.sequence
                stream.send(ack=site_pb2.Ack(sequence=cancelled.sequence))
                # News about a job the gateway already ended: acked without a transition, yet durably.
                stream.send(job_update=job_update(job.job_id, launched.launch.epoch, job_pb2.JOB_STATE_CANCELLED, 7))
                assert answer(stream).ack.sequence == 7
        finally:
            stream.close()
        gateway.stop()
        gateway = start_test_gateway(pki, tmp_path, loop, port=port)
        stream, welcome = connect(gateway, resume_cursor=cancelled.sequence)
        try:
            assert welcome.last_update_sequence == 7  # never less than what was acked
            with alice_client(gateway) as alice:
                alice.create_job(spec_for())
                relaunched = stream.next_of("launch")
            assert relaunched.sequence > cancelled.sequence  # not 1 again
        finally:
            stream.close()
    finally:
        gateway.stop()


def test_sequences_above_2_63_are_refused_clearly_and_the_stream_goes_on(gateway: GatewayHandle) -> None:
    stream, _ = connect(gateway)
    try:
        with alice_client(gateway) as alice:
            job = alice.create_job(spec_for())
            launch = stream.next_of("launch").launch
            stream.send(job_update=job_update(job.job_id, launch.epoch, job_pb2.JOB_STATE_RUNNING, 2**63))
            refused = answer(stream).rejection
            assert (refused.update_sequence, refused.reason) == (2**63, "SEQUENCE_OUT_OF_RANGE")
            stream.send(ack=site_pb2.Ack(sequence=2**64 - 1))
            assert stream.next_of("rejection").rejection.reason == "SEQUENCE_OUT_OF_RANGE"
            assert alice.get_job(job.job_id).state == JobState.DISPATCHED
            stream.send(job_update=job_update(job.job_id, launch.epoch, job_pb2.JOB_STATE_RUNNING, 2**63 - 1))
            assert answer(stream).ack.sequence == 2**63 - 1  # the largest admitted
            assert alice.get_job(job.job_id).state == JobState.RUNNING
    finally:
        stream.close()
    hello = SiteStream(gateway, gateway.pki.site(SITE))
    try:
        hello.send(hello=site_pb2.Hello(site=SITE, agent_version="second-implementation", resume_cursor=2**63))
        with pytest.raises(grpc.RpcError) as ended:
            hello.next()
        assert ended.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "2^63-1" in (ended.value.details() or "")
    finally:
        hello.close()


def test_queued_without_the_lease_returned_flag_is_refused_not_redispatched(gateway: GatewayHandle) -> None:
    stream, _ = connect(gateway)
    try:
        with alice_client(gateway) as alice:
            job = alice.create_job(spec_for())
            launch = stream.next_of("launch").launch
            before = store_state(gateway)
            stream.send(job_update=job_update(job.job_id, launch.epoch, job_pb2.JOB_STATE_QUEUED, 1))
            refused = answer(stream).rejection
            assert (refused.update_sequence, refused.reason) == (1, "ILLEGAL_SITE_STATE")
            stream.send(job_update=job_update(job.job_id, launch.epoch, job_pb2.JOB_STATE_DISPATCHED, 2))
            assert answer(stream).rejection.reason == "ILLEGAL_SITE_STATE"
            assert store_state(gateway) == before
            held = alice.get_job(job.job_id)
            assert (held.state, held.epoch) == (JobState.DISPATCHED, launch.epoch)
            # The lawful way to hand the lease back still works.
            returned = job_update(job.job_id, launch.epoch, job_pb2.JOB_STATE_FAILED, 3, lease_returned=True)
            stream.send(job_update=returned)
            assert answer(stream).ack.sequence == 3
            eventually(lambda: alice.get_job(job.job_id).epoch > launch.epoch, timeout=5, what="a new lease")
    finally:
        stream.close()


def test_a_log_stream_is_sent_within_the_credit_the_gateway_grants_as_the_reader_consumes(
    gateway: GatewayHandle,
) -> None:
    stream, _ = connect(gateway)
    try:
        with alice_client(gateway) as alice:
            job = alice.create_job(spec_for())
            launch = stream.next_of("launch").launch
            stream.send(job_update=job_update(job.job_id, launch.epoch, job_pb2.JOB_STATE_RUNNING, 1))
            assert answer(stream).ack.sequence == 1
            output = bytes(i % 251 for i in range(3 * 1024 * 1024 + 12_345))
            with ThreadPoolExecutor(1) as reader:
                read = reader.submit(lambda: b"".join(p.data for p in alice.stream_job_logs(job.job_id, timeout=30)))
                request = stream.next_of("log_request")
                assert request.sequence == 0 and request.log_request.job_id == job.job_id  # rule 14: not sequenced
                credit, sent = request.log_request.window_bytes, 0  # rule 15: the first credit
                assert credit == 1024 * 1024
                while sent < len(output):
                    if credit == 0:  # wait for the reader to consume: the gateway grants more (and only then)
                        granted = stream.next_of("log_credit")
                        assert granted.sequence == 0 and granted.log_credit.stream_id == request.log_request.stream_id
                        credit += granted.log_credit.bytes
                        continue
                    data = output[sent : sent + min(credit, 64 * 1024)]
                    stream.send(log_chunk=site_pb2.LogChunk(stream_id=request.log_request.stream_id, data=data))
                    credit, sent = credit - len(data), sent + len(data)
                stream.send(log_chunk=site_pb2.LogChunk(stream_id=request.log_request.stream_id, end=True))
                assert read.result(30) == output
    finally:
        stream.close()
