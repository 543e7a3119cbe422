"""EnrollmentService: getting a certificate with a one-time join token (public port, no client certificate),
and renewing one's own certificate before it expires (mTLS port).

Owns: the EnrollmentService servicer: translation only; the CA decides (`gateway.trust`).
"""

from __future__ import annotations

from typing import Any

import grpc

from fedgate.v1 import enrollment_service_pb2 as pb
from fedgate.v1 import enrollment_service_pb2_grpc
from gateway.errors import GatewayError, InvalidArgument
from gateway.transport import convert
from gateway.transport.auth import Authenticator, Guarded
from gateway.transport.errors import translate_errors
from gateway.transport.required import require_fields
from gateway.trust.ratelimit import source_of
from gateway.trust.service import IssuedCertificate, Trust

Context = grpc.aio.ServicerContext[Any, Any]
MAX_CSR_BYTES = 16 * 1024


def _csr(text: str) -> bytes:
    if not text or len(text) > MAX_CSR_BYTES:
        raise InvalidArgument(f"csr_pem must be a PEM certificate request of at most {MAX_CSR_BYTES} bytes")
    return text.encode("ascii", errors="replace")


def _issued(issued: IssuedCertificate) -> dict[str, Any]:
    return {
        "certificate_chain_pem": issued.certificate_pem.decode(),
        "ca_bundle_pem": issued.bundle_pem.decode(),
        "expire_time": convert.time_to_proto(issued.expire_time),
    }


class EnrollmentServicer(Guarded, enrollment_service_pb2_grpc.EnrollmentServiceServicer):
    def __init__(self, auth: Authenticator, trust: Trust) -> None:
        self.auth = auth
        self.trust = trust

    def on_denied(self, context: Context, method: str, error: GatewayError) -> None:
        if method != "Enroll":  # a refused enrolment is audited once, as enrolment.refused, by the trust service
            super().on_denied(context, method, error)

    @translate_errors
    async def Enroll(self, request: pb.EnrollRequest, context: Context) -> pb.EnrollResponse:
        source = source_of(context.peer() or "")
        require_fields(request)  # the join token authenticates this call: nothing to authenticate first
        issued = self.trust.enroll(request.join_token, _csr(request.csr_pem), request.site, source)
        return pb.EnrollResponse(**_issued(issued))

    @translate_errors
    async def RenewCertificate(
        self, request: pb.RenewCertificateRequest, context: Context
    ) -> pb.RenewCertificateResponse:
        credential = self.auth.credential(context)
        require_fields(request)
        issued = self.trust.renew(credential, _csr(request.csr_pem))
        return pb.RenewCertificateResponse(**_issued(issued))
