"""Signed usage receipts end to end: a real agent signs the end of each attempt, the gateway settles exactly one
receipt per attempt with its countersignature, tenants list what they may read, and `fedgate usage` verifies
every signature and totals card-hours and normalised compute; a receipt altered in the gateway's database is
named and fails the command."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fedgate.v1 import usage_pb2
from gateway.cli import usage as usage_cli
from gateway.jobs.model import JobSpec, JobState, Resources, StackRun
from tests.integration.harness import AgentHandle, GatewayHandle, start_test_agent, wait_for_capacity
from tests.waiting import eventually

BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


def quick_job(project: str = "llama-sft", cards: int = 2) -> JobSpec:
    return JobSpec(
        tenant="deepsea-ai",
        project=project,
        resources=Resources("ascend-910b", None, cards),
        runs=(StackRun("cann", "", ("python3", "-c", "import time; time.sleep(0.3)")),),
    )


@pytest.fixture
def ascend_site(gateway: GatewayHandle, tmp_path: Path) -> Iterator[AgentHandle]:
    pools = [{"class": "ascend-910b", "cards": 8, "offered": 8, "cards_per_node": 8}]
    agent = start_test_agent(gateway, "centre-a", pools, tmp_path / "a")
    wait_for_capacity(gateway, "centre-a")
    yield agent
    agent.stop()


def run_to_end(gateway: GatewayHandle, spec: JobSpec) -> str:
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        job = alice.create_job(spec)
        eventually(lambda: alice.get_job(job.job_id).state == JobState.SUCCEEDED, timeout=20, what="the job's end")
    return job.job_id


def usage_flags(gateway: GatewayHandle, creds: Path) -> list[str]:
    return ["--gateway", gateway.address, "--creds", str(creds)]


def test_a_job_that_ran_has_exactly_one_receipt_listed_to_its_tenant(
    gateway: GatewayHandle, ascend_site: AgentHandle
) -> None:
    job_id = run_to_end(gateway, quick_job())
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        eventually(lambda: len(alice.list_usage_receipts(BEGINNING)) == 1, what="the receipt")
        (settled,) = alice.list_usage_receipts(BEGINNING)
    record = settled.record
    assert record is not None
    assert (record.site, record.job_id, record.epoch, record.attempt, record.cards) == ("centre-a", job_id, 1, 1, 2)
    assert record.state == JobState.SUCCEEDED and record.end_time >= record.start_time
    with gateway.client(gateway.pki.user("panda-lm", "bob")) as bob:
        assert bob.list_usage_receipts(BEGINNING) == []  # another tenant's receipts are not listed
    with gateway.client(gateway.pki.admin()) as admin:
        assert [r.record.job_id for r in admin.list_usage_receipts(BEGINNING) if r.record] == [job_id]


def test_fedgate_usage_verifies_every_receipt_and_totals_them(
    gateway: GatewayHandle, ascend_site: AgentHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    run_to_end(gateway, quick_job(cards=2))
    run_to_end(gateway, quick_job(cards=4))
    admin = usage_flags(gateway, gateway.pki.admin())
    with gateway.client(gateway.pki.admin()) as client:
        eventually(lambda: len(client.list_usage_receipts(BEGINNING)) == 2, what="both receipts")
        expected_hours = sum(r.record.card_hours for r in client.list_usage_receipts(BEGINNING) if r.record)
    capsys.readouterr()
    assert usage_cli.main(["-o", "json", *admin]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["tenant"], row["project"], row["site"], row["accelerator_class"]) == (
        "deepsea-ai", "llama-sft", "centre-a", "ascend-910b",
    )  # fmt: skip
    assert row["receipts"] == 2 and row["card_hours"] == pytest.approx(expected_hours)
    assert row["normalised_pflops_hours"] == pytest.approx(expected_hours * 0.32)  # 320 dense BF16 TFLOPS a card
    assert usage_cli.main([*admin, "--until", "1999-01-01"]) == 0
    assert "centre-a" not in capsys.readouterr().out  # nothing ended before 1999


def test_receipt_altered_in_the_gateway_database_fails_fedgate_usage_naming_it(
    gateway: GatewayHandle, ascend_site: AgentHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    honest = run_to_end(gateway, quick_job())
    altered = run_to_end(gateway, quick_job())
    with gateway.client(gateway.pki.admin()) as client:
        eventually(lambda: len(client.list_usage_receipts(BEGINNING)) == 2, what="both receipts")
    with sqlite3.connect(tmp_path / "gateway.db") as db:  # someone with the database bills one job bigger
        (data,) = db.execute("SELECT record FROM receipts WHERE job_id = ?", (altered,)).fetchone()
        record = usage_pb2.UsageRecord.FromString(data)
        record.cards = 8
        db.execute("UPDATE receipts SET record = ? WHERE job_id = ?", (record.SerializeToString(), altered))
    capsys.readouterr()
    assert usage_cli.main(["-o", "json", *usage_flags(gateway, gateway.pki.admin())]) == 1
    out, err = capsys.readouterr()
    assert f"receipt of job {altered} epoch 1 at centre-a does not verify" in err
    assert "the site's signature does not match the record" in err and honest not in err
    (row,) = json.loads(out)
    assert row["receipts"] == 1  # the honest one still counts; the altered one is left out


def test_fedgate_usage_needs_a_ca_to_verify_against(capsys: pytest.CaptureFixture[str]) -> None:
    assert usage_cli.main(["--gateway", "127.0.0.1:1", "--token", "t"]) == 2
    assert "a token needs --ca FILE" in capsys.readouterr().err
    assert usage_cli.main(["--gateway", "127.0.0.1:1", "--ca", "/nonexistent", "--since", "yesterday"]) == 2
    assert "ISO-8601" in capsys.readouterr().err


def test_a_job_cancelled_by_its_owner_still_gets_the_receipt_of_what_it_ran(
    gateway: GatewayHandle, ascend_site: AgentHandle
) -> None:
    sleeper = quick_job()
    sleeper = JobSpec(
        **{**vars(sleeper), "runs": (StackRun("cann", "", ("python3", "-c", "import time; time.sleep(60)")),)}
    )
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        job = alice.create_job(sleeper)
        eventually(lambda: alice.get_job(job.job_id).state == JobState.RUNNING, what="the job to run")
        alice.cancel_job(job.job_id)  # the gateway ends the job first; the site's receipt arrives after
        eventually(lambda: len(alice.list_usage_receipts(BEGINNING)) == 1, what="the cancelled attempt's receipt")
        (settled,) = alice.list_usage_receipts(BEGINNING)
    assert settled.record is not None and settled.record.state == JobState.CANCELLED
