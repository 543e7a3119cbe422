"""The runtime across agent restarts and its usage receipts: attempts re-attached through the backend or reported
lost, never forgotten; every started attempt's end signed once; engines that keep jobs are left alone on stop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from agents.core.commands import Launch, UpdateRejected
from agents.core.model import JobState, JobUpdate
from agents.core.runtime import SiteRuntime
from agents.journal.sqlite import SqliteJournal
from agents.transport.receipts import KeyFileSigner
from fedgate.v1 import job_pb2, usage_pb2

from .fakes import FakeBackend, KeepingBackend
from .pki import MintedPki
from .test_agent_runtime import make_config, settle

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def launch(job: str = "j1", epoch: int = 1, cards: int = 2) -> Launch:
    return Launch(
        job, epoch, 1, accelerator_class="nvidia-h100", cards=cards, command=("x",), tenant="deepsea-ai",
        project="llama-sft",
    )  # fmt: skip


def runtime(backend: FakeBackend, journal: SqliteJournal, pki: MintedPki, clock: Clock) -> SiteRuntime:
    return SiteRuntime(make_config(), backend, journal, clock=clock, signer=KeyFileSigner(pki.site_key))


def record_of(update: JobUpdate, pki: MintedPki) -> usage_pb2.UsageRecord:
    """The signed record, after checking the signature with the site certificate's public key."""
    key = x509.load_pem_x509_certificate(pki.site_cert.read_bytes()).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(update.receipt_signature, update.receipt_record, ec.ECDSA(hashes.SHA256()))
    return usage_pb2.UsageRecord.FromString(update.receipt_record)


async def test_ended_attempt_carries_a_receipt_signed_with_the_site_key(pki: MintedPki, tmp_path: Path) -> None:
    backend, clock = FakeBackend(), Clock()
    site = runtime(backend, SqliteJournal(tmp_path / "j.db"), pki, clock)
    await site.handle(launch(cards=2))
    clock.now = T0 + timedelta(hours=3)
    backend.finish("j1", 1, exit_code=0)
    await settle()
    running, final = site.unacknowledged_updates()
    assert running.receipt_record == b"" and final.state == JobState.SUCCEEDED
    record = record_of(final, pki)
    assert (record.site, record.job_id, record.epoch, record.attempt) == ("centre-a", "j1", 1, 1)
    assert (record.tenant, record.project, record.accelerator_class, record.cards) == (
        "deepsea-ai", "llama-sft", "nvidia-h100", 2,
    )  # fmt: skip
    assert record.state == job_pb2.JOB_STATE_SUCCEEDED
    assert record.end_time.ToDatetime(tzinfo=UTC) - record.start_time.ToDatetime(tzinfo=UTC) == timedelta(hours=3)


async def test_refused_launch_carries_no_receipt(pki: MintedPki, tmp_path: Path) -> None:
    site = runtime(FakeBackend(), SqliteJournal(tmp_path / "j.db"), pki, Clock())
    await site.handle(launch(cards=99))
    (refused,) = site.unacknowledged_updates()
    assert refused.state == JobState.FAILED and refused.receipt_record == b""


async def test_repeated_launch_of_an_ended_attempt_resends_the_same_receipt(pki: MintedPki, tmp_path: Path) -> None:
    backend = FakeBackend()
    site = runtime(backend, SqliteJournal(tmp_path / "j.db"), pki, Clock())
    await site.handle(launch())
    backend.finish("j1", 1)
    await settle()
    await site.handle(launch())
    first_end, repeat = site.unacknowledged_updates()[-2:]
    assert repeat.sequence > first_end.sequence
    assert (repeat.receipt_record, repeat.receipt_signature) == (first_end.receipt_record, first_end.receipt_signature)


async def test_end_whose_receipt_the_gateway_refused_is_sent_again_without_it(pki: MintedPki, tmp_path: Path) -> None:
    backend = FakeBackend()
    site = runtime(backend, SqliteJournal(tmp_path / "j.db"), pki, Clock())
    await site.handle(launch())
    backend.finish("j1", 1)
    await settle()
    end = site.unacknowledged_updates()[-1]
    await site.handle(UpdateRejected(end.sequence, reason="RECEIPT_INVALID", message="not signed by the certificate"))
    (again,) = site.unacknowledged_updates(after=end.sequence - 1)
    assert (again.state, again.receipt_record) == (JobState.SUCCEEDED, b"") and again.sequence > end.sequence


async def test_restarted_agent_re_attaches_attempts_the_backend_still_runs(pki: MintedPki, tmp_path: Path) -> None:
    backend, clock = FakeBackend(), Clock()
    first = runtime(backend, SqliteJournal(tmp_path / "j.db"), pki, clock)
    await first.handle(launch(cards=2))
    # The agent process dies here (no shutdown); the engine keeps the job; a new agent opens the same journal.
    second = runtime(backend, SqliteJournal(tmp_path / "j.db"), pki, clock)
    await second.restore()
    assert [(r.job_id, r.epoch, r.state) for r in second.running()] == [("j1", 1, JobState.RUNNING)]
    assert next(p.free for p in second.capacity() if p.accelerator_class == "nvidia-h100") == 2
    clock.now = T0 + timedelta(minutes=30)
    backend.finish("j1", 1)
    await settle()
    final = second.unacknowledged_updates()[-1]
    assert (final.state, final.sequence) == (JobState.SUCCEEDED, 2)  # numbering went on from the journal
    assert final.device_indices == (0, 1)
    record = record_of(final, pki)
    assert record.start_time.ToDatetime(tzinfo=UTC) == T0  # the start the first run journaled


async def test_attempt_the_backend_no_longer_knows_is_reported_lost_not_forgotten(
    pki: MintedPki, tmp_path: Path
) -> None:
    first = runtime(FakeBackend(), SqliteJournal(tmp_path / "j.db"), pki, Clock())
    await first.handle(launch(cards=2))
    second = runtime(FakeBackend(), SqliteJournal(tmp_path / "j.db"), pki, Clock())  # an engine that forgot it
    await second.restore()
    assert second.running() == []
    lost = second.unacknowledged_updates()[-1]
    # Nobody saw it end, so it did not fail: LOST, which the gateway queues again by its policy. The site cannot
    # vouch for how long it ran, so it signs no receipt (the gateway accounts it from its own times).
    assert (lost.job_id, lost.state) == ("j1", JobState.LOST)
    assert "lost track" in lost.message
    assert lost.receipt_record == b""
    assert next(p.free for p in second.capacity() if p.accelerator_class == "nvidia-h100") == 4
    third = runtime(FakeBackend(), SqliteJournal(tmp_path / "j.db"), pki, Clock())
    await third.restore()
    assert third.unacknowledged_updates()[-1].sequence == lost.sequence  # reported once, not on every start


async def test_stopping_leaves_jobs_to_an_engine_that_keeps_them(pki: MintedPki, tmp_path: Path) -> None:
    backend = KeepingBackend()
    site = runtime(backend, SqliteJournal(tmp_path / "j.db"), pki, Clock())
    await site.handle(launch())
    await site.shutdown(timeout_s=1.0)
    assert backend.handles[("j1", 1)].cancel_graces == []
    assert site.draining and all(p.free == 0 for p in site.capacity())
    assert [s.key for s in SqliteJournal(tmp_path / "j.db").started()] == [("j1", 1)]


async def test_stopping_stops_jobs_of_an_engine_that_does_not_keep_them(pki: MintedPki, tmp_path: Path) -> None:
    backend = FakeBackend()
    site = runtime(backend, SqliteJournal(tmp_path / "j.db"), pki, Clock())
    await site.handle(launch())
    await site.shutdown(timeout_s=1.0)
    final = site.unacknowledged_updates()[-1]
    assert final.state == JobState.PREEMPTED and final.receipt_record
    assert SqliteJournal(tmp_path / "j.db").started() == []
