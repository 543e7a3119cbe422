"""EnrollmentService from the site's side: Enroll on the gateway's public port, RenewCertificate on its mTLS port.

Owns: the gRPC calls, protobuf <-> `IssuedCertificate`, and turning a failed call into the agent's errors
with the gateway's ErrorInfo reason (from the google.rpc.Status in the `grpc-status-details-bin` trailer):
UNAVAILABLE and DEADLINE_EXCEEDED become GatewayUnreachable, every other status EnrollmentRefused. It does
not decide whom to trust (`agents.identity.pinning`) nor what to write (`agents.identity.enrollment`,
`agents.identity.credentials`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC
from typing import Any

import grpc
import grpc.aio
from google.rpc import error_details_pb2, status_pb2

from agents.errors import AgentError, EnrollmentRefused, GatewayUnreachable
from agents.identity.credentials import IssuedCertificate
from agents.transport import tls_probe
from fedgate.v1 import enrollment_service_pb2 as pb
from fedgate.v1 import enrollment_service_pb2_grpc

ENROLL_TIMEOUT_S = 15.0
STATUS_DETAILS_KEY = "grpc-status-details-bin"
UNREACHABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class GrpcEnrollmentGateway:
    """`agents.identity.enrollment.EnrollmentGateway` over a TLS probe and a gRPC channel (no client certificate)."""

    def __init__(self, timeout_s: float = ENROLL_TIMEOUT_S) -> None:
        self._timeout_s = timeout_s

    def server_chain(self, gateway: str) -> list[bytes]:
        return tls_probe.server_chain(gateway, self._timeout_s)

    def enroll(self, gateway: str, ca_pem: bytes, join_token: str, csr_pem: bytes, site: str) -> IssuedCertificate:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)  # the pinned CA, nothing else
        request = pb.EnrollRequest(join_token=join_token, csr_pem=csr_pem.decode("ascii"), site=site)
        with grpc.secure_channel(gateway, credentials) as channel:
            stub = enrollment_service_pb2_grpc.EnrollmentServiceStub(channel)
            try:
                response = stub.Enroll(request, timeout=self._timeout_s)
            except grpc.RpcError as exc:
                call: Any = exc  # a failed unary call's error is also its grpc.Call
                raise rpc_error(call.code(), call.details(), call.trailing_metadata(), gateway, "enrol") from None
        return issued_from_proto(response)


async def renew_certificate(channel: grpc.aio.Channel, csr_pem: bytes, timeout_s: float) -> IssuedCertificate:
    """RenewCertificate over an established mTLS channel; the gateway certifies the caller's current identity."""
    stub = enrollment_service_pb2_grpc.EnrollmentServiceStub(channel)
    try:
        response = await stub.RenewCertificate(
            pb.RenewCertificateRequest(csr_pem=csr_pem.decode("ascii")), timeout=timeout_s
        )
    except grpc.aio.AioRpcError as exc:
        raise rpc_error(exc.code(), exc.details(), exc.trailing_metadata(), "the gateway", "renew") from None
    return issued_from_proto(response)


def issued_from_proto(response: pb.EnrollResponse | pb.RenewCertificateResponse) -> IssuedCertificate:
    expire = response.expire_time.ToDatetime(tzinfo=UTC) if response.HasField("expire_time") else None
    return IssuedCertificate(
        certificate_chain_pem=response.certificate_chain_pem.encode("ascii"),
        ca_bundle_pem=response.ca_bundle_pem.encode("ascii"),
        expire_time=expire,
    )


def error_info(trailing: Iterable[Any] | None) -> tuple[str, str]:
    """(reason, message) from the google.rpc.Status the gateway puts in its trailers; ("", "") without one."""
    for key, value in trailing or ():
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                return info.reason, status.message
        return "", status.message
    return "", ""


def rpc_error(
    code: grpc.StatusCode,
    details: str | None,
    trailing: Iterable[Any] | None,
    gateway: str,
    verb: str,
) -> AgentError:
    """The agent's error for a failed Enroll/RenewCertificate call."""
    reason, message = error_info(trailing)
    message = message or details or "no details"
    if code in UNREACHABLE_CODES:
        hint = (
            "; is it the gateway's public enrolment address, and is the gateway up?"
            if verb == "enrol"
            else "; will retry"
        )
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and verb == "enrol":
            hint = "; if it enrolled the site meanwhile the token is used up, and the admin must create a new one"
        return GatewayUnreachable(f"could not {verb} with {gateway} ({code.name}: {message}){hint}")
    return EnrollmentRefused(f"{gateway} refused to {verb}: {message}", reason=reason or code.name, code=code.name)
