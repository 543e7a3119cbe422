"""EnrollmentService: the one RPC reachable without a client certificate.

Join-token enrolment (one-time tokens bound to a site, CSR signing) is not in this release: the call answers
FAILED_PRECONDITION with the way to get a certificate today, rather than pretending to enrol.
"""

from __future__ import annotations

from typing import Any

import grpc

from fedgate.v1 import enrollment_service_pb2 as pb
from fedgate.v1 import enrollment_service_pb2_grpc
from gateway.errors import FailedPrecondition
from gateway.transport.errors import translate_errors

Context = grpc.aio.ServicerContext[Any, Any]


class EnrollmentServicer(enrollment_service_pb2_grpc.EnrollmentServiceServicer):
    @translate_errors
    async def Enroll(self, request: pb.EnrollRequest, context: Context) -> pb.EnrollResponse:
        raise FailedPrecondition(
            "join-token enrolment is not enabled on this gateway; ask the federation admin for a site"
            " certificate made with `fedgate ca issue --site NAME`",
            reason="ENROLMENT_DISABLED",
        )
