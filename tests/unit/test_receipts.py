"""Usage receipts, signed at the site and checked at the gateway: a receipt that matches its lease and is signed
by the presented certificate settles; each tampered field, a foreign key or a changed byte is refused; settled
receipts verify offline only with both signatures and certificates of the federation CA."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agents.core.model import JobState as AgentState
from agents.core.usage import UsageRecord as AgentRecord
from agents.transport.receipts import KeyFileSigner
from gateway.identity.ca import CertificateAuthority, init_ca
from gateway.identity.principal import Principal
from gateway.jobs.model import Job, JobSpec, JobState, Placement, Resources, StackRun
from gateway.transport.receipts import record_from_bytes
from gateway.usage.receipts import (
    Countersigner,
    ReceiptInvalid,
    SettledReceipt,
    SiteReceipt,
    check_receipt,
    settled_problems,
)

FED = "unit"
NOW = datetime.now(UTC).replace(microsecond=0)  # taken when the module loads: minutes before its tests may run
START = NOW - timedelta(hours=2)
VALID_FROM = START - timedelta(hours=1)
"""When every certificate below becomes valid: before NOW however late the fixture runs (a default certificate is
valid from 5 minutes before its issue, the check allows 5 minutes of skew, and a whole suite on a busy machine
collected this module more than 10 minutes before it got here: three tests failed so)."""


@dataclasses.dataclass(frozen=True)
class Parties:
    ca: CertificateAuthority
    site_dir: Path
    other_site_dir: Path
    gateway_dir: Path
    foreign: CertificateAuthority


@pytest.fixture(scope="module")
def parties(tmp_path_factory: pytest.TempPathFactory) -> Parties:
    root = tmp_path_factory.mktemp("receipts")
    ca = init_ca(root / "ca", FED, not_before=VALID_FROM)
    foreign = init_ca(root / "foreign", FED, not_before=VALID_FROM)
    return Parties(
        ca,
        ca.issue(Principal.site(FED, "centre-a"), root / "a", not_before=VALID_FROM),
        ca.issue(Principal.site(FED, "centre-b"), root / "b", not_before=VALID_FROM),
        ca.issue_server(root / "gw", not_before=VALID_FROM),
        foreign,
    )


def der(creds: Path) -> bytes:
    return x509.load_pem_x509_certificate((creds / "cert.pem").read_bytes()).public_bytes(serialization.Encoding.DER)


def job() -> Job:
    spec = JobSpec("deepsea-ai", "llama-sft", Resources("ascend-910b", None, 2), (StackRun("cann", "", ("x",)),))
    return Job("job-1", spec, JobState.RUNNING, START, START, attempt=1, epoch=3,
               placements=(Placement("centre-a", "ascend-910b", 2),))  # fmt: skip


def agent_record(**changes: object) -> AgentRecord:
    base = AgentRecord("centre-a", "job-1", 3, 1, "deepsea-ai", "llama-sft", "ascend-910b", 2, START, NOW, 0,
                       AgentState.SUCCEEDED)  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def signed(creds: Path, **changes: object) -> SiteReceipt:
    receipt = KeyFileSigner(creds / "key.pem").sign(agent_record(**changes))
    return SiteReceipt(receipt.record, receipt.signature, record_from_bytes(receipt.record))


def test_receipt_matching_its_lease_and_signed_by_the_presented_certificate_is_accepted(parties: Parties) -> None:
    record = check_receipt(signed(parties.site_dir), der(parties.site_dir), "centre-a", job(), JobState.SUCCEEDED, NOW)
    assert (record.job_id, record.epoch, record.cards, record.card_hours) == ("job-1", 3, 2, 4.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("site", "centre-b"),
        ("job_id", "job-2"),
        ("epoch", 2),
        ("attempt", 2),
        ("tenant", "panda-lm"),
        ("project", "other"),
        ("accelerator_class", "nvidia-h100"),
        ("cards", 8),
        ("state", AgentState.FAILED),
    ],
)
def test_receipt_with_a_field_that_does_not_match_the_lease_is_refused(
    parties: Parties, field: str, value: object
) -> None:
    with pytest.raises(ReceiptInvalid, match=field) as refused:
        check_receipt(signed(parties.site_dir, **{field: value}), der(parties.site_dir), "centre-a", job(),
                      JobState.SUCCEEDED, NOW)  # fmt: skip
    assert refused.value.reason == "RECEIPT_INVALID"


def test_receipt_ending_before_it_starts_or_in_the_future_is_refused(parties: Parties) -> None:
    with pytest.raises(ReceiptInvalid, match="ends before it starts"):
        check_receipt(signed(parties.site_dir, end_time=START - timedelta(seconds=1)), der(parties.site_dir),
                      "centre-a", job(), JobState.SUCCEEDED, NOW)  # fmt: skip
    with pytest.raises(ReceiptInvalid, match="future"):
        check_receipt(signed(parties.site_dir, end_time=NOW + timedelta(hours=1)), der(parties.site_dir),
                      "centre-a", job(), JobState.SUCCEEDED, NOW)  # fmt: skip


def test_receipt_signed_by_another_sites_key_is_refused(parties: Parties) -> None:
    with pytest.raises(ReceiptInvalid, match="not signed by the certificate"):
        check_receipt(signed(parties.other_site_dir), der(parties.site_dir), "centre-a", job(), JobState.SUCCEEDED, NOW)


def test_receipt_with_a_changed_byte_is_refused(parties: Parties) -> None:
    good = signed(parties.site_dir)
    flipped = bytearray(good.record_bytes)
    flipped[-1] ^= 0x01
    tampered = SiteReceipt(bytes(flipped), good.signature, record_from_bytes(bytes(flipped)))
    with pytest.raises(ReceiptInvalid):
        check_receipt(tampered, der(parties.site_dir), "centre-a", job(), JobState.SUCCEEDED, NOW)
    garbage = SiteReceipt(b"\xff\xff\xff", good.signature, record_from_bytes(b"\xff\xff\xff"))
    with pytest.raises(ReceiptInvalid, match="not a UsageRecord"):
        check_receipt(garbage, der(parties.site_dir), "centre-a", job(), JobState.SUCCEEDED, NOW)


def settle(parties: Parties) -> SettledReceipt:
    signer = Countersigner.load(parties.gateway_dir / "key.pem", parties.gateway_dir / "cert.pem")
    return signer.settle(signed(parties.site_dir), der(parties.site_dir), NOW)


def test_settled_receipt_verifies_against_the_federation_ca(parties: Parties) -> None:
    assert settled_problems(settle(parties), [parties.ca.certificate], FED) == []


def test_settled_receipt_does_not_verify_against_another_ca(parties: Parties) -> None:
    problems = settled_problems(settle(parties), [parties.foreign.certificate], FED)
    assert any("site certificate was not issued by the federation CA" in p for p in problems)
    assert any("gateway certificate was not issued by the federation CA" in p for p in problems)


def test_settled_receipt_with_a_tampered_record_or_countersignature_does_not_verify(parties: Parties) -> None:
    good = settle(parties)
    other = signed(parties.site_dir, cards=1)  # a validly signed record, swapped under the old signature
    swapped = dataclasses.replace(good, receipt=SiteReceipt(other.record_bytes, good.receipt.signature, other.record))
    assert "the site's signature does not match the record" in settled_problems(swapped, [parties.ca.certificate], FED)
    bad_counter = dataclasses.replace(good, gateway_signature=good.gateway_signature[:-1] + b"\x00")
    assert any("countersignature" in p for p in settled_problems(bad_counter, [parties.ca.certificate], FED))


def test_settled_receipt_whose_site_certificate_names_another_site_does_not_verify(parties: Parties) -> None:
    settled = dataclasses.replace(settle(parties), site_certificate=der(parties.other_site_dir))
    (problem,) = settled_problems(settled, [parties.ca.certificate], FED)
    assert "names spiffe://unit/site/centre-b, not spiffe://unit/site/centre-a" in problem
