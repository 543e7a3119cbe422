"""Bearer tokens on the public port (CI systems without certificates): compact JWS, EdDSA only, bound to this
gateway's audience, short-lived, optionally single-use, revocable. Each flawed token is refused with its own
reason, the refusal is audited, and nothing is created."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from gateway.transport.client import FederationClient
from tests.integration.harness import FEDERATION, GatewayHandle
from tests.security.support import (
    assert_audit_intact,
    assert_refused,
    audited,
    b64url,
    b64url_json,
    claims,
    signed_token,
    spec_for,
    store_state,
    token_parts,
    token_public_key_pem,
    token_public_key_raw,
)


def assert_token_refused(gateway: GatewayHandle, token: str, reason: str) -> None:
    """The token is refused for `reason` on a write and on a read, nothing is created, and it is audited."""
    before = store_state(gateway)
    with gateway.token_client(token) as ci:
        assert_refused(lambda: ci.create_job(spec_for()), "UNAUTHENTICATED", reason)
        assert_refused(ci.list_jobs, "UNAUTHENTICATED", reason)
    assert store_state(gateway) == before
    denied = audited(gateway, "call.denied", reason=reason)
    assert {e.details["method"] for e in denied} == {"CreateJob", "ListJobs"}
    assert_audit_intact(gateway)


def test_token_signed_here_for_this_audience_is_accepted(gateway: GatewayHandle) -> None:
    # The control: everything the other tests change is what makes their token unacceptable.
    with gateway.token_client(signed_token(gateway, claims(gateway))) as ci:
        job = ci.create_job(spec_for())
        assert [j.job_id for j in ci.list_jobs()] == [job.job_id]
    stored = gateway.running.core.store.get_job(job.job_id)
    assert stored is not None and stored.owner == f"spiffe://{FEDERATION}/tenant/deepsea-ai/user/ci-bot"


def test_expired_token_is_refused(gateway: GatewayHandle) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    token = signed_token(
        gateway, claims(gateway, issued_at=now - timedelta(hours=2), expires_at=now - timedelta(seconds=1))
    )
    assert_token_refused(gateway, token, "TOKEN_EXPIRED")


def test_token_issued_by_the_admin_is_refused_once_it_expires(
    gateway: GatewayHandle, admin: FederationClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = admin.issue_token("deepsea-ai", "ci-bot", ttl=timedelta(minutes=1)).token
    with gateway.token_client(token) as ci:
        assert ci.list_jobs() == []
    later = datetime.now(UTC) + timedelta(minutes=2)
    monkeypatch.setattr(gateway.running.trust, "clock", lambda: later)
    assert_token_refused(gateway, token, "TOKEN_EXPIRED")


def test_token_not_yet_valid_is_refused(gateway: GatewayHandle) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    token = signed_token(
        gateway, claims(gateway, issued_at=now + timedelta(hours=1), expires_at=now + timedelta(hours=2))
    )
    assert_token_refused(gateway, token, "TOKEN_NOT_YET_VALID")


def test_token_living_longer_than_a_day_is_refused(gateway: GatewayHandle) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    token = signed_token(gateway, claims(gateway, issued_at=now, expires_at=now + timedelta(days=30)))
    assert_token_refused(gateway, token, "TOKEN_LIFETIME")


def test_replayed_single_use_token_is_refused(gateway: GatewayHandle, admin: FederationClient) -> None:
    token = admin.issue_token("deepsea-ai", "ci-bot", single_use=True).token
    with gateway.token_client(token) as ci:
        job = ci.create_job(spec_for())  # the one use
    before = store_state(gateway)
    assert [j.job_id for j in before.jobs] == [job.job_id]
    assert_token_refused(gateway, token, "TOKEN_REPLAYED")


def test_token_for_another_audience_is_refused(gateway: GatewayHandle) -> None:
    # Signed with this gateway's own key, but addressed to another federation's gateway.
    token = signed_token(gateway, claims(gateway, audience="fedgate://other-federation"))
    assert_token_refused(gateway, token, "TOKEN_AUDIENCE")


def test_tampered_token_is_refused(gateway: GatewayHandle, admin: FederationClient) -> None:
    issued = admin.issue_token("deepsea-ai", "ci-bot", role="viewer").token
    header, payload, signature = token_parts(issued)
    # Promote the viewer to a member of another tenant, keeping the original signature.
    payload.update(role="member", sub=f"spiffe://{FEDERATION}/tenant/panda-lm/user/bob")
    assert_token_refused(gateway, f"{b64url_json(header)}.{b64url_json(payload)}.{signature}", "TOKEN_SIGNATURE")


def test_token_with_a_flipped_signature_byte_is_refused(gateway: GatewayHandle, admin: FederationClient) -> None:
    head, body, signature = admin.issue_token("deepsea-ai", "ci-bot").token.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    assert_token_refused(gateway, f"{head}.{body}.{flipped}", "TOKEN_SIGNATURE")


@pytest.mark.parametrize("secret", ["raw", "pem"])
def test_algorithm_confusion_hmac_token_is_refused(gateway: GatewayHandle, secret: str) -> None:
    # The classic confusion: HS256 with the verifier's public key as the shared secret.
    key = token_public_key_raw(gateway) if secret == "raw" else token_public_key_pem(gateway)
    head = b64url_json({"alg": "HS256", "typ": "JWT"})
    _, payload, _ = token_parts(signed_token(gateway, claims(gateway)))
    body = b64url_json(payload)
    mac = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert_token_refused(gateway, f"{head}.{body}.{b64url(mac)}", "TOKEN_ALGORITHM")


def test_unsigned_alg_none_token_is_refused(gateway: GatewayHandle) -> None:
    head = b64url_json({"alg": "none", "typ": "JWT"})
    _, payload, _ = token_parts(signed_token(gateway, claims(gateway)))
    # The textbook form has an empty signature part: `header.payload.`
    assert_token_refused(gateway, f"{head}.{b64url_json(payload)}.", "TOKEN_ALGORITHM")


def test_token_cannot_speak_for_an_admin_or_a_site(gateway: GatewayHandle) -> None:
    for subject in (f"spiffe://{FEDERATION}/admin/root", f"spiffe://{FEDERATION}/site/centre-a"):
        token = signed_token(gateway, claims(gateway, subject=subject))
        with gateway.token_client(token) as ci:
            assert_refused(ci.list_jobs, "UNAUTHENTICATED", "TOKEN_SUBJECT")
    assert store_state(gateway).jobs == ()


def test_revoked_token_is_refused(gateway: GatewayHandle, admin: FederationClient) -> None:
    issued = admin.issue_token("deepsea-ai", "ci-bot")
    with gateway.token_client(issued.token) as ci:
        assert ci.list_jobs() == []
    admin.revoke(token_id=issued.token_id, reason="leaked in a CI log")
    assert_token_refused(gateway, issued.token, "REVOKED")
