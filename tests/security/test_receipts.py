"""A site's usage receipt is its signed word on what an attempt consumed: the gateway settles it only when it
verifies under the certificate the site presented and matches the lease; otherwise the end is applied (a job
never stays RUNNING for want of a receipt) but the receipt is not settled and the refusal is audited
(`receipt.refused`, RECEIPT_INVALID); a replay settles once. On reconnect, attempts the
gateway does not know are cancelled and audited with the site and the job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from agents.core.model import JobState as AgentState
from agents.core.usage import UsageRecord
from agents.transport.receipts import KeyFileSigner
from fedgate.v1 import job_pb2, site_pb2, usage_pb2
from gateway.jobs.model import JobState
from tests.integration.harness import GatewayHandle
from tests.security.support import (
    ALICE,
    SiteStream,
    assert_audit_intact,
    audited,
    job_update,
    spec_for,
)

BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


def receipt(creds: Path, job_id: str, epoch: int, **changes: object) -> usage_pb2.UsageReceipt:
    end = datetime.now(UTC)
    fields: dict[str, object] = {
        "site": "centre-a", "job_id": job_id, "epoch": epoch, "attempt": 1, "tenant": "deepsea-ai",
        "project": "llama-sft", "accelerator_class": "ascend-910b", "cards": 1,
        "start_time": end - timedelta(seconds=5), "end_time": end, "exit_code": 0, "state": AgentState.SUCCEEDED,
    }  # fmt: skip
    fields.update(changes)
    signed = KeyFileSigner(creds / "key.pem").sign(UsageRecord(**fields))  # type: ignore[arg-type]
    return usage_pb2.UsageReceipt(record=signed.record, signature=signed.signature)


def running_job(gateway: GatewayHandle, stream: SiteStream) -> tuple[str, int]:
    """A job leased to centre-a on `stream`, reported RUNNING (update sequence 1)."""
    assert stream.hello("centre-a").HasField("welcome")
    stream.report()
    with gateway.client(gateway.pki.user(*ALICE)) as alice:
        job = alice.create_job(spec_for())
    launch = stream.next_of("launch").launch
    stream.send(job_update=job_update(job.job_id, launch.epoch, job_pb2.JOB_STATE_RUNNING, 1))
    assert stream.next_of("ack").ack.sequence == 1
    return job.job_id, launch.epoch


def receipts_of(gateway: GatewayHandle) -> int:
    store = gateway.running.core.store
    return len(store.list_receipts(None, BEGINNING, datetime.now(UTC) + timedelta(days=1)).receipts)


def test_terminal_update_with_a_tampered_receipt_ends_the_job_settles_nothing_and_is_audited(
    gateway: GatewayHandle,
) -> None:
    creds = gateway.pki.site("centre-a")
    stream = SiteStream(gateway, creds)
    try:
        job_id, epoch = running_job(gateway, stream)
        good = receipt(creds, job_id, epoch)
        record = usage_pb2.UsageRecord.FromString(good.record)
        record.cards = 64  # bill more than was leased, under the original signature
        tampered = usage_pb2.UsageReceipt(record=record.SerializeToString(), signature=good.signature)
        stream.send(job_update=job_update(job_id, epoch, job_pb2.JOB_STATE_SUCCEEDED, 2, receipt=tampered))
        assert stream.next_of("ack").ack.sequence == 2  # the end is heard: the job does not stay RUNNING
        assert receipts_of(gateway) == 0
        with gateway.client(gateway.pki.user(*ALICE)) as alice:
            assert alice.get_job(job_id).state == JobState.SUCCEEDED

        # Another site's key cannot sign for centre-a either, not even on a replay of the end.
        foreign = receipt(gateway.pki.site("centre-b"), job_id, epoch)
        stream.send(job_update=job_update(job_id, epoch, job_pb2.JOB_STATE_SUCCEEDED, 3, receipt=foreign))
        assert stream.next_of("ack").ack.sequence == 3
        assert receipts_of(gateway) == 0
    finally:
        stream.close()
    entries = audited(gateway, "receipt.refused", job_id=job_id, reason="RECEIPT_INVALID")
    assert len(entries) == 2 and entries[0].principal.endswith("/site/centre-a")
    assert "not signed by the certificate" in entries[0].details["message"]
    assert_audit_intact(gateway)


def test_a_valid_receipt_settles_once_even_when_replayed(gateway: GatewayHandle) -> None:
    creds = gateway.pki.site("centre-a")
    stream = SiteStream(gateway, creds)
    try:
        job_id, epoch = running_job(gateway, stream)
        good = receipt(creds, job_id, epoch)
        for _ in range(2):  # the agent replays its journal after a reconnect: same sequence, same bytes
            stream.send(job_update=job_update(job_id, epoch, job_pb2.JOB_STATE_SUCCEEDED, 2, receipt=good))
            assert stream.next_of("ack").ack.sequence == 2
        # A repeat under a new sequence (a Launch re-reported) settles nothing new either.
        stream.send(job_update=job_update(job_id, epoch, job_pb2.JOB_STATE_SUCCEEDED, 3, receipt=good))
        assert stream.next_of("ack").ack.sequence == 3
    finally:
        stream.close()
    assert receipts_of(gateway) == 1
    (settled,) = gateway.running.core.store.list_receipts(None, BEGINNING, datetime.now(UTC)).receipts
    assert settled.receipt.record_bytes == good.record and settled.gateway_signature


def test_attempt_the_gateway_does_not_know_is_cancelled_and_audited_on_reconnect(gateway: GatewayHandle) -> None:
    stream = SiteStream(gateway, gateway.pki.site("centre-a"))
    try:
        ghost = site_pb2.RunningJob(job_id="job-ghost", epoch=4, state=job_pb2.JOB_STATE_RUNNING)
        stream.send(hello=site_pb2.Hello(site="centre-a", agent_version="security-test", running=[ghost]))
        assert stream.next().HasField("welcome")
        cancel = stream.next_of("cancel").cancel
        assert (cancel.job_id, cancel.epoch) == ("job-ghost", 4)
    finally:
        stream.close()
    (entry,) = audited(gateway, "site.attempt_cancelled", job_id="job-ghost", epoch="4")
    assert entry.principal.endswith("/site/centre-a") and "not active" in entry.details["message"]
