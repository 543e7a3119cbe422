"""Settlement a site cannot game: its times are checked against the gateway's own record of the attempt (a
RUNNING backdated before the dispatch is clamped to it; a receipt starting before the dispatch or ending after
the gateway heard the end is not settled, the job still ends and the refusal is audited), and a site enrolled
with any key type enrolment accepts (EC P-256, P-384, RSA 2048+) signs receipts the gateway settles and
`fedgate usage` verifies."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fedgate.v1 import job_pb2
from gateway.cli import usage as usage_cli
from gateway.jobs.model import JobState
from gateway.usage.receipts import settled_problems
from tests.integration.harness import FEDERATION, AgentHandle, GatewayHandle
from tests.integration.test_usage_receipts import ascend_site as ascend_site  # noqa: PLC0414 (a fixture)
from tests.integration.test_usage_receipts import quick_job, run_to_end, usage_flags
from tests.security.support import (
    ALICE,
    BOB,
    SiteStream,
    assert_audit_intact,
    audited,
    enroll_into,
    job_update,
    spec_for,
)
from tests.security.test_receipts import BEGINNING, receipt, receipts_of, running_job
from tests.waiting import eventually

A_YEAR = timedelta(days=365)


def test_a_backdated_start_bills_nothing_extra(gateway: GatewayHandle) -> None:
    creds = gateway.pki.site("centre-a")
    stream = SiteStream(gateway, creds)
    try:
        assert stream.hello("centre-a").HasField("welcome")
        stream.report()
        with gateway.client(gateway.pki.user(*ALICE)) as alice:
            job_id = alice.create_job(spec_for()).job_id
        epoch = stream.next_of("launch").launch.epoch
        dispatched = gateway.running.core.store.get_job(job_id)
        assert dispatched is not None and dispatched.state == JobState.DISPATCHED
        # RUNNING "a year ago", then a receipt to match: 8,760 card-hours for a job of a second.
        running = job_update(job_id, epoch, job_pb2.JOB_STATE_RUNNING, 1)
        running.time.FromDatetime(datetime.now(UTC) - A_YEAR)
        stream.send(job_update=running)
        assert stream.next_of("ack").ack.sequence == 1
        started = gateway.running.core.store.get_job(job_id)
        assert started is not None and started.start_time is not None
        assert started.start_time >= dispatched.update_time  # clamped to the gateway's dispatch
        backdated = receipt(creds, job_id, epoch, start_time=datetime.now(UTC) - A_YEAR)
        stream.send(job_update=job_update(job_id, epoch, job_pb2.JOB_STATE_SUCCEEDED, 2, receipt=backdated))
        assert stream.next_of("ack").ack.sequence == 2
    finally:
        stream.close()
    job = gateway.running.core.store.get_job(job_id)
    assert job is not None and job.state == JobState.SUCCEEDED  # ended, not left RUNNING
    assert receipts_of(gateway) == 0
    (refused,) = audited(gateway, "receipt.refused", job_id=job_id)
    assert "before the gateway dispatched" in refused.details["message"]
    usage = gateway.running.core.store.usage_between(BEGINNING, datetime.now(UTC) + timedelta(days=1))
    assert sum(hours for *_, hours, _n in usage) < 0.1  # the gateway's own times: seconds, not a year
    assert_audit_intact(gateway)


def test_a_receipt_ending_after_the_end_was_heard_is_not_settled(gateway: GatewayHandle) -> None:
    creds = gateway.pki.site("centre-a")
    stream = SiteStream(gateway, creds)
    try:
        job_id, epoch = running_job(gateway, stream)
        late = receipt(creds, job_id, epoch, end_time=datetime.now(UTC) + timedelta(hours=2))
        stream.send(job_update=job_update(job_id, epoch, job_pb2.JOB_STATE_SUCCEEDED, 2, receipt=late))
        assert stream.next_of("ack").ack.sequence == 2
    finally:
        stream.close()
    assert receipts_of(gateway) == 0
    (refused,) = audited(gateway, "receipt.refused", job_id=job_id)
    assert "ends in the future" in refused.details["message"]


@pytest.mark.parametrize(
    "make_key",
    [
        pytest.param(lambda: ec.generate_private_key(ec.SECP256R1()), id="ec-p256"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP384R1()), id="ec-p384"),
        pytest.param(lambda: rsa.generate_private_key(65537, 2048), id="rsa-2048"),
        pytest.param(lambda: rsa.generate_private_key(65537, 3072), id="rsa-3072"),
    ],
)
def test_every_key_type_enrolment_accepts_signs_receipts_the_gateway_settles(
    gateway: GatewayHandle, tmp_path: Path, make_key: object
) -> None:
    with gateway.client(gateway.pki.admin()) as admin:
        token = admin.create_join_token("centre-a", timedelta(minutes=5)).token
    creds = enroll_into(gateway, token, "centre-a", tmp_path / "centre-a", key=make_key())  # type: ignore[operator]
    stream = SiteStream(gateway, creds)
    try:
        job_id, epoch = running_job(gateway, stream)
        signed = receipt(creds, job_id, epoch)  # the agent's own signer over the agent's own key file
        stream.send(job_update=job_update(job_id, epoch, job_pb2.JOB_STATE_SUCCEEDED, 2, receipt=signed))
        assert stream.next_of("ack").ack.sequence == 2
    finally:
        stream.close()
    assert audited(gateway, "receipt.refused", job_id=job_id) == []
    (settled,) = gateway.running.core.store.list_receipts(None, BEGINNING, datetime.now(UTC)).receipts
    authorities = x509.load_pem_x509_certificates((gateway.pki.root / "ca" / "ca.pem").read_bytes())
    assert settled_problems(settled, authorities, FEDERATION) == []  # what `fedgate usage` checks


def test_fedgate_usage_counts_a_copied_receipt_once_and_names_a_deleted_one(
    gateway: GatewayHandle, ascend_site: AgentHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copied = run_to_end(gateway, quick_job())
    deleted = run_to_end(gateway, quick_job())
    with gateway.client(gateway.pki.admin()) as client:
        eventually(lambda: len(client.list_usage_receipts(BEGINNING)) == 2, what="both receipts")
    with closing(sqlite3.connect(tmp_path / "gateway.db", isolation_level=None)) as db:
        # Someone with the database drops the one-receipt-per-attempt rule, bills one job four times and
        # removes the receipt of another.
        db.execute("CREATE TABLE receipts_copy AS SELECT * FROM receipts")
        db.execute("DROP TABLE receipts")
        db.execute("ALTER TABLE receipts_copy RENAME TO receipts")
        for n in (1, 2, 3):
            db.execute(
                "INSERT INTO receipts SELECT id + ?, site, job_id, epoch, attempt, tenant, project, class, cards, "
                "start_time, end_time, exit_code, state, record, site_signature, site_certificate, "
                "gateway_signature, gateway_certificate, settle_time FROM receipts WHERE job_id = ? AND id < 100",
                (100 * n, copied),
            )
        db.execute("DELETE FROM receipts WHERE job_id = ?", (deleted,))
    with gateway.client(gateway.pki.admin()) as client:
        assert len(client.list_usage_receipts(BEGINNING)) == 4  # what the gateway now hands out
    capsys.readouterr()
    assert usage_cli.main(["-o", "json", *usage_flags(gateway, gateway.pki.admin())]) == 1
    out, err = capsys.readouterr()
    (row,) = json.loads(out)
    assert row["receipts"] == 1  # counted once
    assert f"receipt of job {copied} epoch 1 at centre-a appears more than once" in err
    assert f"job {deleted} epoch 1 ended at centre-a without a settled receipt" in err


def test_a_receipt_whose_tenant_column_was_changed_goes_to_no_other_tenant_and_its_owner_is_told(
    gateway: GatewayHandle, ascend_site: AgentHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Someone with the database moves a receipt to another tenant by its columns (the signed record still says
    deepsea-ai): the other tenant does not get it, the owner's `fedgate usage` names the attempt as ended without
    a receipt, the admin's totals still count it for the tenant the site signed for, and the gateway logs the
    row: listings are judged by the signed record, never by the columns."""
    moved = run_to_end(gateway, quick_job())
    kept = run_to_end(gateway, quick_job())
    with gateway.client(gateway.pki.admin()) as client:
        eventually(lambda: len(client.list_usage_receipts(BEGINNING)) == 2, what="both receipts")
    with closing(sqlite3.connect(tmp_path / "gateway.db", isolation_level=None)) as db:
        db.execute("UPDATE receipts SET tenant = 'panda-lm', project = 'eval' WHERE job_id = ?", (moved,))
    with gateway.client(gateway.pki.user(*BOB)) as bob:
        assert bob.list_usage_receipts(BEGINNING) == []  # the row names panda-lm; the site signed deepsea-ai
    with gateway.client(gateway.pki.user(*ALICE)) as alice:
        assert [r.record.job_id for r in alice.list_usage_receipts(BEGINNING) if r.record] == [kept]
    capsys.readouterr()
    usage_cli.main(["-o", "json", *usage_flags(gateway, gateway.pki.user(*ALICE))])
    _, err = capsys.readouterr()
    assert f"job {moved} epoch 1 ended at centre-a without a settled receipt" in err
    assert usage_cli.main(["-o", "json", *usage_flags(gateway, gateway.pki.admin())]) == 0
    out, _ = capsys.readouterr()
    assert [(r["tenant"], r["receipts"]) for r in json.loads(out)] == [("deepsea-ai", 2)]  # by what was signed
