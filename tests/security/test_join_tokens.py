"""Enrolment is a double opt-in: the admin creates a one-time join token bound to one site, the centre sends
a CSR for a key it made itself. A token enrols its site once, before it expires, and nothing else; a refused
attempt leaves the token exactly as it was."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fedgate.v1 import enrollment_service_pb2, enrollment_service_pb2_grpc
from gateway.identity.join import JoinTokenRecord, parse_join_token
from gateway.identity.principal import Principal, load_certificate, spiffe_uri_of
from gateway.transport.client import FederationClient
from tests.integration.harness import FEDERATION, GatewayHandle
from tests.security.support import (
    CALL_TIMEOUT_S,
    SiteStream,
    assert_audit_intact,
    audited,
    enroll,
    enroll_into,
    public_channel,
    refusal,
)


def record_of(gateway: GatewayHandle, join_token: str) -> JoinTokenRecord:
    record = gateway.running.core.store.join_token(parse_join_token(join_token)[0])
    assert record is not None
    return record


def assert_enrol_refused(gateway: GatewayHandle, join_token: str, site: str, code: str, reason: str) -> None:
    """Refused with `reason`; the token's record is unchanged; no certificate was signed; it is audited."""
    before = record_of(gateway, join_token)
    enrolments = len(audited(gateway, "enrolment"))
    error = refusal(lambda: enroll(gateway, join_token, site))
    assert (error.code, error.reason) == (code, reason), error.message
    assert record_of(gateway, join_token) == before
    assert len(audited(gateway, "enrolment")) == enrolments
    assert audited(gateway, "enrolment.refused", site=site, reason=reason)
    assert_audit_intact(gateway)


def test_join_token_enrols_its_site(gateway: GatewayHandle, admin: FederationClient, tmp_path: Path) -> None:
    # The control: a fresh token, the right site, in time.
    joined = admin.create_join_token("centre-x")
    creds = enroll_into(gateway, joined.token, "centre-x", tmp_path / "centre-x")
    assert spiffe_uri_of(load_certificate((creds / "cert.pem").read_bytes())) == f"spiffe://{FEDERATION}/site/centre-x"
    assert record_of(gateway, joined.token).used_time is not None
    stream = SiteStream(gateway, creds)
    try:
        assert stream.hello("centre-x").HasField("welcome")
    finally:
        stream.close()


def test_reused_join_token_is_refused(gateway: GatewayHandle, admin: FederationClient) -> None:
    joined = admin.create_join_token("centre-x")
    enroll(gateway, joined.token, "centre-x")
    assert_enrol_refused(gateway, joined.token, "centre-x", "PERMISSION_DENIED", "JOIN_TOKEN_USED")


def test_expired_join_token_is_refused(
    gateway: GatewayHandle, admin: FederationClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    joined = admin.create_join_token("centre-x", ttl=timedelta(minutes=10))
    later = datetime.now(UTC) + timedelta(minutes=11)
    monkeypatch.setattr(gateway.running.trust, "clock", lambda: later)
    assert_enrol_refused(gateway, joined.token, "centre-x", "PERMISSION_DENIED", "JOIN_TOKEN_EXPIRED")
    assert record_of(gateway, joined.token).used_time is None


def test_join_token_for_another_site_is_refused(gateway: GatewayHandle, admin: FederationClient) -> None:
    joined = admin.create_join_token("centre-x")
    assert_enrol_refused(gateway, joined.token, "centre-y", "PERMISSION_DENIED", "JOIN_TOKEN_WRONG_SITE")
    assert record_of(gateway, joined.token).used_time is None
    enroll(gateway, joined.token, "centre-x")  # the refusal did not spend it


def test_join_token_with_a_wrong_secret_is_refused(gateway: GatewayHandle, admin: FederationClient) -> None:
    joined = admin.create_join_token("centre-x")
    token_id, secret = parse_join_token(joined.token)
    guessed = f"fgj_{token_id}.{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"
    before = record_of(gateway, joined.token)
    error = refusal(lambda: enroll(gateway, guessed, "centre-x"))
    assert (error.code, error.reason) == ("UNAUTHENTICATED", "JOIN_TOKEN_UNKNOWN")
    assert record_of(gateway, joined.token) == before
    assert audited(gateway, "enrolment.refused", reason="JOIN_TOKEN_UNKNOWN")


def test_enrolment_ignores_the_identity_a_csr_claims(gateway: GatewayHandle, admin: FederationClient) -> None:
    joined = admin.create_join_token("centre-x")
    key = ec.generate_private_key(ec.SECP256R1())
    admin_uri = Principal.admin(FEDERATION, "root").uri
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "root")]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(admin_uri)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    request = enrollment_service_pb2.EnrollRequest(
        join_token=joined.token, csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode(), site="centre-x"
    )
    with public_channel(gateway) as channel:
        reply = enrollment_service_pb2_grpc.EnrollmentServiceStub(channel).Enroll(request, timeout=CALL_TIMEOUT_S)
    issued = load_certificate(reply.certificate_chain_pem.encode())
    assert spiffe_uri_of(issued) == f"spiffe://{FEDERATION}/site/centre-x"


class ShiftedClock:
    """The real time plus `shift`, which the test moves."""

    def __init__(self, shift: timedelta) -> None:
        self.shift = shift

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.shift


def test_site_re_enrolled_after_its_revocation_is_accepted(
    gateway: GatewayHandle, admin: FederationClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Revoking a principal refuses the certificates issued to it until then, not a later re-enrolment
    # (gateway/identity/revocation.py). The usual sequence: revoke a compromised centre, then re-enrol it.
    # Certificate times have one-second resolution, so a re-enrolled certificate is valid from the second after
    # the revocation. A real re-enrolment comes minutes later; here the gateway's clock revokes two seconds in
    # the past and then catches up, so that the new certificate is valid by the gateway's clock and by the real
    # one TLS checks it with, without the test waiting for time to pass.
    clock = ShiftedClock(timedelta(seconds=-2))
    monkeypatch.setattr(gateway.running.trust, "clock", clock)
    old = gateway.pki.site("centre-r")
    admin.revoke(principal=Principal.site(FEDERATION, "centre-r").uri, reason="key compromised")
    clock.shift = timedelta(0)
    joined = admin.create_join_token("centre-r")
    fresh = enroll_into(gateway, joined.token, "centre-r", tmp_path / "centre-r")
    stream = SiteStream(gateway, fresh)
    try:
        assert stream.hello("centre-r").HasField("welcome")
    finally:
        stream.close()
    stale = SiteStream(gateway, old)
    try:
        error = refusal(lambda: stale.hello("centre-r"))
        assert (error.code, error.reason) == ("UNAUTHENTICATED", "REVOKED")
    finally:
        stale.close()
