"""Brakes on the public port, tried as an attacker: guessing join tokens as fast as the gateway answers,
guessing bearer tokens, a CSR with a corrupted key, and a site that reports a trillion cards. The guesses are
slowed to the failure rate and refused with RESOURCE_EXHAUSTED (RATE_LIMITED) and a RetryInfo; the flood writes
a bounded number of audit rows (the rest are counted in one `audit.coalesced` row); a corrupted key is
INVALID_ARGUMENT, audited; an absurd capacity report is refused whole with a Rejection naming the limit."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization
from google.rpc import error_details_pb2, status_pb2

from fedgate.v1 import (
    enrollment_service_pb2,
    enrollment_service_pb2_grpc,
    job_service_pb2,
    job_service_pb2_grpc,
    site_pb2,
)
from gateway.sites.model import MAX_POOL_CARDS, MAX_POOLS
from gateway.transport.brakes import BrakeSettings
from gateway.transport.client import FederationClient
from tests.integration.harness import GatewayHandle
from tests.security.support import (
    CALL_TIMEOUT_S,
    SiteStream,
    assert_audit_intact,
    audited,
    new_csr,
    public_channel,
)

GUESSES = 200
SITE = "centre-b"


def retry_delay(error: Any) -> float:
    """The RetryInfo's delay in seconds of a refused call's google.rpc.Status (fails if there is none)."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    return float(info.retry_delay.ToTimedelta().total_seconds())
    raise AssertionError("the refusal carries no RetryInfo")


def test_guessing_join_tokens_is_slowed_and_writes_a_bounded_number_of_audit_rows(gateway: GatewayHandle) -> None:
    _key, csr = new_csr()
    codes: list[grpc.StatusCode] = []
    delays: list[float] = []
    with public_channel(gateway) as channel:
        stub = enrollment_service_pb2_grpc.EnrollmentServiceStub(channel)
        for guess in range(GUESSES):
            request = enrollment_service_pb2.EnrollRequest(
                join_token=f"fgj_guess{guess:04d}.{'x' * 32}", csr_pem=csr, site=SITE
            )
            try:
                stub.Enroll(request, timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as exc:
                codes.append(exc.code())
                if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    assert "RATE_LIMITED" in str(exc.trailing_metadata())
                    delays.append(retry_delay(exc))
    failures_let_through = sum(1 for c in codes if c != grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert len(codes) == GUESSES  # none of the guesses was taken
    # The burst of failures, then about failure_rate a second: far from the hundreds a second it was.
    assert failures_let_through <= BrakeSettings().failure_burst + 10, failures_let_through
    assert delays and all(0 < d <= 60 for d in delays)
    refused = audited(gateway, "enrolment.refused")
    assert 1 <= len(refused) <= 3, [e.details for e in refused]  # one per reason from this source, not per guess
    assert all(e.details.get("source") == "127.0.0.1" for e in refused)
    assert not audited(gateway, "call.denied", method="Enroll")  # not a second row per refusal
    gateway.running.trust.flush_refusals(force=True)
    summaries = audited(gateway, "audit.coalesced", refused_kind="enrolment.refused", source="127.0.0.1")
    assert sum(int(e.details["count"]) for e in summaries) == failures_let_through - len(refused)
    assert_audit_intact(gateway)


def test_guessing_bearer_tokens_is_rate_limited_per_source(gateway: GatewayHandle) -> None:
    limited = 0
    with public_channel(gateway) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        for guess in range(100):
            metadata = (("authorization", f"Bearer not.a.token{guess}"),)
            try:
                stub.ListJobs(job_service_pb2.ListJobsRequest(), metadata=metadata, timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as exc:
                limited += exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert limited >= 100 - BrakeSettings().failure_burst - 10
    assert len(audited(gateway, "call.denied", method="ListJobs")) <= 3


def test_a_csr_with_a_corrupted_key_is_invalid_argument_and_audited(
    gateway: GatewayHandle, admin: FederationClient
) -> None:
    join_token = admin.create_join_token(SITE, ttl=timedelta(minutes=10)).token
    key, csr_text = new_csr()
    pem = csr_text.encode()
    der = bytearray(base64.b64decode(b"".join(pem.strip().splitlines()[1:-1])))
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    at = bytes(der).index(point)
    der[at + 10] ^= 0xFF  # the point is no longer on the curve
    broken = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(der))
    broken += b"-----END CERTIFICATE REQUEST-----\n"
    with public_channel(gateway) as channel:
        stub = enrollment_service_pb2_grpc.EnrollmentServiceStub(channel)
        request = enrollment_service_pb2.EnrollRequest(join_token=join_token, csr_pem=broken.decode(), site=SITE)
        try:
            stub.Enroll(request, timeout=CALL_TIMEOUT_S)
            raise AssertionError("a corrupted key was signed")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.details()
    assert audited(gateway, "enrolment.refused", site=SITE, reason="BAD_CSR")
    # The token was not spent: the site enrols with a sound CSR.
    with public_channel(gateway) as channel:
        stub = enrollment_service_pb2_grpc.EnrollmentServiceStub(channel)
        _key, sound = new_csr()
        reply = stub.Enroll(
            enrollment_service_pb2.EnrollRequest(join_token=join_token, csr_pem=sound, site=SITE),
            timeout=CALL_TIMEOUT_S,
        )
        assert reply.certificate_chain_pem


def test_a_trillion_cards_is_refused_not_truncated_and_believed(
    gateway: GatewayHandle, admin: FederationClient
) -> None:
    stream = SiteStream(gateway, gateway.pki.site(SITE))
    try:
        assert stream.hello(SITE).WhichOneof("kind") == "welcome"
        stream.report(total=8)
        # 10^12 does not fit uint32: a hand-made agent's varint arrives truncated to its low 32 bits.
        truncated = 10**12 % 2**32
        pool = site_pb2.Pool(accelerator_class="ascend-910b", total=truncated, offered=truncated, free=truncated)
        stream.send(capacity=site_pb2.CapacityReport(full=True, pools=[pool]))
        refused = stream.next_of("rejection").rejection
        assert refused.reason == "CAPACITY_OUT_OF_BOUNDS"
        assert str(MAX_POOL_CARDS) in refused.message and "max_pool_cards" in refused.message
        many = [site_pb2.Pool(accelerator_class="ascend-910b", total=1) for _ in range(MAX_POOLS + 1)]
        stream.send(capacity=site_pb2.CapacityReport(full=True, pools=many))
        assert stream.next_of("rejection").rejection.reason == "CAPACITY_OUT_OF_BOUNDS"
        [site] = [s for s in admin.list_sites() if s.name == SITE]
        assert [(p.total, p.offered) for p in site.pools] == [(8, 8)]  # the last sane report stands
    finally:
        stream.close()
