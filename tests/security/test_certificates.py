"""Who may connect to the mTLS port at all: a valid, unrevoked certificate of this federation's CA, checked in
the TLS handshake (chain, validity period) and again on every call and while a stream is open (revocation,
expiry)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from fedgate.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from gateway.identity.principal import Principal
from gateway.transport.client import FederationClient
from tests.integration.harness import FEDERATION, GatewayHandle
from tests.security.support import (
    ALICE,
    CALL_TIMEOUT_S,
    CUT_WITHIN_S,
    SiteStream,
    Watch,
    assert_audit_intact,
    assert_refused,
    audited,
    ca_pem,
    client_of,
    mtls_channel,
    serial_of,
    spec_for,
    store_state,
)

CREATE = job_service_pb2.CreateJobRequest(
    request_id="refused", spec=job_pb2.JobSpec(tenant="deepsea-ai", project="llama-sft")
)


def issue_user(
    gateway: GatewayHandle, out: Path, not_before: datetime | None = None, not_after: datetime | None = None
) -> Path:
    """A fresh certificate for alice (so that revoking it leaves the session's shared one alone)."""
    principal = Principal.user(FEDERATION, *ALICE)
    return gateway.pki.ca.issue(principal, out, not_before=not_before, not_after=not_after)


def assert_handshake_refused(gateway: GatewayHandle, creds_dir: Path) -> None:
    """The TLS handshake fails: the client sees UNAVAILABLE and no RPC reaches the gateway's code."""
    before = store_state(gateway)
    with client_of(gateway, creds_dir) as client:
        assert_refused(lambda: client.create_job(spec_for()), "UNAVAILABLE")
        assert_refused(client.list_jobs, "UNAVAILABLE")
    assert store_state(gateway) == before


def test_call_without_client_certificate_is_refused(gateway: GatewayHandle) -> None:
    before = store_state(gateway)
    with mtls_channel(gateway.address, ca_pem(gateway)) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        assert_refused(lambda: stub.CreateJob(CREATE, timeout=CALL_TIMEOUT_S), "UNAVAILABLE")
    assert store_state(gateway) == before


def test_health_and_reflection_need_a_client_certificate(gateway: GatewayHandle) -> None:
    with mtls_channel(gateway.address, ca_pem(gateway)) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert_refused(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S), "UNAVAILABLE")
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        listing = reflection_pb2.ServerReflectionRequest(list_services="")
        assert_refused(lambda: reflect.ServerReflectionInfo(iter([listing]), timeout=CALL_TIMEOUT_S), "UNAVAILABLE")
    # With a certificate, both answer: they are served, just never anonymously.
    alice = gateway.pki.user(*ALICE)
    cert, key = (alice / "cert.pem").read_bytes(), (alice / "key.pem").read_bytes()
    with mtls_channel(gateway.address, ca_pem(gateway), cert, key) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_certificate_from_a_foreign_ca_is_refused(gateway: GatewayHandle, tmp_path: Path) -> None:
    # Same federation name, same URI, a CA the gateway never trusted: only the chain tells them apart.
    foreign = gateway.pki.foreign.issue(Principal.admin(FEDERATION, "root"), tmp_path / "foreign-admin")
    (foreign / "ca.pem").write_bytes(ca_pem(gateway))  # it trusts the real gateway, so only our side refuses
    assert_handshake_refused(gateway, foreign)


def test_expired_certificate_is_refused(gateway: GatewayHandle, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    expired = issue_user(
        gateway, tmp_path / "expired", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
    )
    assert_handshake_refused(gateway, expired)


def test_not_yet_valid_certificate_is_refused(gateway: GatewayHandle, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    future = issue_user(
        gateway, tmp_path / "future", not_before=now + timedelta(days=1), not_after=now + timedelta(days=30)
    )
    assert_handshake_refused(gateway, future)


def test_revoked_certificate_is_refused_on_a_new_call(
    gateway: GatewayHandle, admin: FederationClient, tmp_path: Path
) -> None:
    revoked = issue_user(gateway, tmp_path / "revoked")
    with client_of(gateway, revoked) as alice:
        alice.list_jobs()  # works before
        admin.revoke(serial=serial_of(revoked), reason="laptop stolen")
        before = store_state(gateway)
        assert_refused(lambda: alice.create_job(spec_for()), "UNAUTHENTICATED", "REVOKED")
        assert_refused(alice.list_jobs, "UNAUTHENTICATED", "REVOKED")
    assert store_state(gateway) == before
    with client_of(gateway, gateway.pki.user(*ALICE)) as colleague:  # the same user's other certificate
        assert colleague.list_jobs() == []
    denied = audited(gateway, "call.denied", reason="REVOKED")
    assert {e.details["method"] for e in denied} == {"CreateJob", "ListJobs"}
    assert_audit_intact(gateway)


def test_revoked_certificate_cannot_use_health_or_reflection(
    gateway: GatewayHandle, admin: FederationClient, tmp_path: Path
) -> None:
    # "Revocation is checked on every call" includes the services grpc provides, not only fedgate's own.
    revoked = issue_user(gateway, tmp_path / "revoked")
    admin.revoke(serial=serial_of(revoked), reason="laptop stolen")
    cert, key = (revoked / "cert.pem").read_bytes(), (revoked / "key.pem").read_bytes()
    with mtls_channel(gateway.address, ca_pem(gateway), cert, key) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert_refused(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S), "UNAUTHENTICATED")
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        listing = reflection_pb2.ServerReflectionRequest(list_services="")
        assert_refused(lambda: reflect.ServerReflectionInfo(iter([listing]), timeout=CALL_TIMEOUT_S), "UNAUTHENTICATED")


def test_revoked_principal_is_refused_on_a_new_call(
    gateway: GatewayHandle, admin: FederationClient, tmp_path: Path
) -> None:
    revoked = issue_user(gateway, tmp_path / "revoked")
    principal = Principal.user(FEDERATION, *ALICE).uri
    admin.revoke(principal=principal, reason="left the company")
    before = store_state(gateway)
    for creds in (revoked, gateway.pki.user(*ALICE)):  # every certificate issued to alice until now
        with client_of(gateway, creds) as alice:
            assert_refused(lambda: alice.create_job(spec_for()), "UNAUTHENTICATED", "REVOKED")
    assert store_state(gateway) == before


def test_revoked_certificate_cuts_an_open_watch_stream(gateway: GatewayHandle, admin: FederationClient) -> None:
    creds = gateway.pki.user(*ALICE)
    with client_of(gateway, creds) as alice:
        job = alice.create_job(spec_for())
        watch = Watch(alice, job.job_id)
        assert watch.first_event().state.value == "QUEUED"  # the stream is open and authenticated
        revoked_at = time.monotonic()
        admin.revoke(serial=serial_of(creds), reason="compromised")
        before = store_state(gateway)
        watch.join()
        assert watch.error is not None, "the stream ended without an error"
        assert watch.ended_at - revoked_at < CUT_WITHIN_S
        assert (watch.error.code, watch.error.reason) == ("UNAUTHENTICATED", "REVOKED"), watch.error.message
        assert_refused(lambda: alice.get_job(job.job_id), "UNAUTHENTICATED", "REVOKED")  # and no new call
    assert store_state(gateway) == before
    assert audited(gateway, "call.denied", method="WatchJob", reason="REVOKED")
    assert_audit_intact(gateway)


def test_revoked_site_certificate_cuts_an_open_site_stream(gateway: GatewayHandle, admin: FederationClient) -> None:
    creds = gateway.pki.site("centre-a")
    stream = SiteStream(gateway, creds)
    try:
        assert stream.hello("centre-a").HasField("welcome")
        revoked_at = time.monotonic()
        admin.revoke(principal=Principal.site(FEDERATION, "centre-a").uri, reason="centre left")
        with pytest.raises(grpc.RpcError) as cut:
            stream.next_of("never")  # read until the gateway ends the stream
        cut_after = time.monotonic() - revoked_at
    finally:
        stream.close()
    assert cut.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert cut_after < CUT_WITHIN_S
    assert audited(gateway, "stream.cut", reason="REVOKED")[0].principal.endswith("/site/centre-a")
    again = SiteStream(gateway, creds)  # and it cannot come back with the same certificate
    try:
        with pytest.raises(grpc.RpcError) as refused:
            again.hello("centre-a")
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        again.close()
    assert_audit_intact(gateway)


def test_certificate_that_expires_cuts_an_open_watch_stream(
    gateway: GatewayHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The handshake checked validity when the stream opened; the periodic re-check must notice expiry later.
    with client_of(gateway, gateway.pki.user(*ALICE)) as alice:
        job = alice.create_job(spec_for())
        watch = Watch(alice, job.job_id)
        watch.first_event()
        later = datetime.now(UTC) + timedelta(days=400)  # past the 90-day certificate's end
        monkeypatch.setattr(gateway.running.trust, "clock", lambda: later)
        watch.join()
    assert watch.error is not None and (watch.error.code, watch.error.reason) == ("UNAUTHENTICATED", "EXPIRED")
