"""Signed usage receipts: checking a site's receipt against its lease, countersigning it, verifying it later.

Owns: the receipt nouns (`UsageRecord`, `SiteReceipt`, `SettledReceipt`), the checks a receipt must pass
before the gateway settles it (the site's signature under the certificate it presented on its connection, the
record's site is the caller, job/epoch/attempt/tenant/project/class/cards match the lease, the state is the
update's, start <= end, not in the future), the gateway's countersignature over record || site signature,
and the offline verification `fedgate usage` runs on settled receipts (both signatures, both certificates
chain to the federation CA and name the right SPIFFE URI). Pure apart from reading the gateway's key file;
no protobuf: the transport parses record bytes into `UsageRecord` and the signatures cover those bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fedgate.common import receipt_signature
from gateway.errors import ConfigError, IdentityError, InvalidArgument
from gateway.identity.principal import gateway_uri, load_certificate, spiffe_uri_of
from gateway.jobs.model import Job, JobState

MAX_CLOCK_SKEW = timedelta(minutes=5)
"""How far a site's clock may be off from the gateway's: a receipt's times may lie this far outside the window
the gateway saw (dispatch to the end heard), and certificate validity this far off when verified later."""
RECEIPT_CLOCK_SKEW = timedelta(seconds=30)
"""How much longer than the window the gateway saw (dispatch to the end heard) a receipt's attempt may last
(start-up and delivery jitter): all a site can add to an attempt by lying. A constant offset of the site's clock
moves both ends alike and adds nothing, so an honest site minutes off still settles (the chaos catalogue's
clock-skew case); a backdated start or a late end lengthens the attempt and is refused."""
RECEIPT_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.PREEMPTED})


class ReceiptInvalid(InvalidArgument):
    """A site's usage receipt does not verify or does not match its lease; its update is refused whole."""

    reason = "RECEIPT_INVALID"


@dataclass(frozen=True)
class UsageRecord:
    """What one attempt consumed at one site, as the site signed it. Times are aware UTC datetimes."""

    site: str
    job_id: str
    epoch: int
    attempt: int
    tenant: str
    project: str
    accelerator_class: str
    cards: int
    start_time: datetime
    end_time: datetime
    exit_code: int
    state: JobState

    @property
    def card_hours(self) -> float:
        return self.cards * max(0.0, (self.end_time - self.start_time).total_seconds()) / 3600


@dataclass(frozen=True)
class SiteReceipt:
    """The site's signed record: `record_bytes` exactly as signed, and the record parsed from them (None when
    the bytes are not a record: such a receipt never verifies)."""

    record_bytes: bytes
    signature: bytes
    record: UsageRecord | None


@dataclass(frozen=True)
class SettledReceipt:
    """A receipt the gateway accepted: the site's certificate (DER) as presented on its connection, and the
    gateway's signature over record || site signature, with the gateway's certificate (DER)."""

    receipt: SiteReceipt
    site_certificate: bytes
    gateway_signature: bytes
    gateway_certificate: bytes
    settle_time: datetime

    @property
    def record(self) -> UsageRecord | None:
        return self.receipt.record

    def describe(self) -> str:
        r = self.record
        return f"job {r.job_id} epoch {r.epoch} at {r.site}" if r else "a receipt whose record does not parse"


def check_receipt(
    receipt: SiteReceipt,
    site_certificate: bytes,
    site: str,
    job: Job,
    state: JobState,
    now: datetime,
    *,
    dispatched_at: datetime | None = None,
) -> UsageRecord:
    """The receipt's record if it may be settled for `site`'s update to `state` of `job`'s current lease,
    received at `now`, for an attempt the gateway dispatched at `dispatched_at` (the gateway's own record: a
    receipt may last no longer than from `dispatched_at` to `now` plus RECEIPT_CLOCK_SKEW, and its times may be
    off that window by at most MAX_CLOCK_SKEW); ReceiptInvalid naming the first problem otherwise."""
    record = receipt.record
    if record is None:
        raise ReceiptInvalid("the receipt's record is not a UsageRecord")
    try:
        certificate = load_certificate(site_certificate)
    except IdentityError as exc:
        raise ReceiptInvalid(f"the site's certificate cannot be read: {exc.message}") from None
    if not _signed_by(certificate, receipt.record_bytes, receipt.signature):
        raise ReceiptInvalid(f"the receipt of job {job.job_id} is not signed by the certificate site {site} presented")
    placement = next((p for p in job.placements if p.site == site), None)
    expected = {
        "site": site,
        "job_id": job.job_id,
        "epoch": job.epoch,
        "attempt": job.attempt,
        "tenant": job.spec.tenant,
        "project": job.spec.project,
        "accelerator_class": placement.accelerator_class if placement else "",
        "cards": placement.cards if placement else 0,
        "state": state,
    }
    for field, wanted in expected.items():
        got = getattr(record, field)
        if got != wanted:
            raise ReceiptInvalid(f"the receipt of job {job.job_id} says {field} {got!r}; the lease says {wanted!r}")
    if record.state not in RECEIPT_STATES:
        raise ReceiptInvalid(f"a receipt cannot be for a {record.state.value} attempt")
    if record.start_time > record.end_time:
        raise ReceiptInvalid(f"the receipt of job {job.job_id} ends before it starts")
    if record.end_time > now + MAX_CLOCK_SKEW:
        raise ReceiptInvalid(
            f"the receipt of job {job.job_id} ends in the future ({record.end_time.isoformat()}), after the gateway "
            f"heard of the end ({now.isoformat()}), by more than the {MAX_CLOCK_SKEW} a site's clock may be off"
        )
    if dispatched_at is not None:
        if record.start_time < dispatched_at - MAX_CLOCK_SKEW:
            raise ReceiptInvalid(
                f"the receipt of job {job.job_id} starts at {record.start_time.isoformat()}, before the gateway "
                f"dispatched the attempt ({dispatched_at.isoformat()}), by more than a site's clock may be off"
            )
        seen = now - dispatched_at
        if record.end_time - record.start_time > seen + RECEIPT_CLOCK_SKEW:
            raise ReceiptInvalid(
                f"the receipt of job {job.job_id} lasts {record.end_time - record.start_time}, longer than the "
                f"gateway saw the attempt ({seen}, from dispatch to the end heard)"
            )
    return record


class Countersigner:
    """The gateway's key and certificate (its serving credentials), countersigning settled receipts."""

    def __init__(self, key: receipt_signature.PrivateKey, certificate: bytes) -> None:
        self._key = key
        self.certificate = certificate
        """DER."""

    @classmethod
    def load(cls, key_path: Path, cert_path: Path) -> Countersigner:
        """From the gateway's `tls.key` and `tls.cert` (the first certificate of the chain is the gateway's)."""
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            certificate = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
        except (OSError, ValueError, IndexError) as exc:
            raise ConfigError(f"cannot load the gateway's key {key_path} and certificate {cert_path}: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) or not receipt_signature.supported(key):
            raise ConfigError(f"{key_path} is not an EC P-256/P-384 or RSA (2048 bits or more) key")
        return cls(key, certificate.public_bytes(serialization.Encoding.DER))

    def settle(self, receipt: SiteReceipt, site_certificate: bytes, now: datetime) -> SettledReceipt:
        signature = receipt_signature.sign(self._key, receipt.record_bytes + receipt.signature)
        return SettledReceipt(receipt, site_certificate, signature, self.certificate, now)


def settled_problems(settled: SettledReceipt, authorities: list[x509.Certificate], federation: str) -> list[str]:
    """Why a settled receipt cannot be trusted (empty: it can): both certificates must be issued by one of
    `authorities` (the federation CA bundle), the site's must name spiffe://<federation>/site/<record.site> and
    the gateway's the gateway URI, and both signatures must hold over the stored bytes."""
    record = settled.record
    if record is None:
        return ["the record bytes are not a UsageRecord"]
    problems = []
    site_uri = f"spiffe://{federation}/site/{record.site}"
    problems += _certificate_problems("site", settled.site_certificate, site_uri, authorities, record.end_time)
    if not problems and not _signed_by(
        load_certificate(settled.site_certificate), settled.receipt.record_bytes, settled.receipt.signature
    ):
        problems.append("the site's signature does not match the record")
    gateway = _certificate_problems(
        "gateway", settled.gateway_certificate, gateway_uri(federation), authorities, settled.settle_time
    )
    if not gateway and not _signed_by(
        load_certificate(settled.gateway_certificate),
        settled.receipt.record_bytes + settled.receipt.signature,
        settled.gateway_signature,
    ):
        gateway.append("the gateway's countersignature does not match the record and the site's signature")
    return problems + gateway


def _certificate_problems(
    who: str, der: bytes, uri: str, authorities: list[x509.Certificate], when: datetime
) -> list[str]:
    try:
        certificate = load_certificate(der)
        found = spiffe_uri_of(certificate)
    except IdentityError as exc:
        return [f"the {who} certificate is unusable: {exc.message}"]
    if found != uri:
        return [f"the {who} certificate names {found}, not {uri}"]
    if not any(_issued_by(certificate, authority) for authority in authorities):
        return [f"the {who} certificate was not issued by the federation CA"]
    if not certificate.not_valid_before_utc - MAX_CLOCK_SKEW <= when <= certificate.not_valid_after_utc:
        return [f"the {who} certificate was not valid at {when.isoformat()}"]
    return []


def _issued_by(certificate: x509.Certificate, authority: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(authority)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _signed_by(certificate: x509.Certificate, data: bytes, signature: bytes) -> bool:
    return receipt_signature.verify(certificate.public_key(), data, signature)
