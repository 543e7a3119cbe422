"""The client's one channel to a gateway and the one place a call is made and a refusal translated.

Owns: the channel (mTLS or a bearer token, keepalive, message limits), the service stubs on it, `_call` (every
unary call, with the client's timeout) and `error_from_rpc`, which turns a refused call into `ClientError` with
the gRPC code, the server's reason code and its message. It owns no RPC of its own: those are in
`client_jobs`, `client_reservations` and `client_admin`, put together in `gateway.transport.client`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2

from fedgate.v1 import (
    admin_service_pb2_grpc,
    enrollment_service_pb2_grpc,
    job_service_pb2_grpc,
    reservation_service_pb2_grpc,
)
from gateway.errors import ClientError
from gateway.trust.credentials import Credentials

T = TypeVar("T")


def error_from_rpc(error: grpc.RpcError) -> ClientError:
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    message = (error.details() if isinstance(error, grpc.Call) else str(error)) or code.name
    reason = code.name
    if isinstance(error, grpc.Call):
        for key, value in error.trailing_metadata() or ():
            if key == "grpc-status-details-bin" and isinstance(value, bytes):
                status = status_pb2.Status.FromString(value)
                for detail in status.details:
                    info = error_details_pb2.ErrorInfo()
                    if detail.Unpack(info):
                        reason = info.reason
    return ClientError(message, code=code.name, reason=reason)


class ClientChannel:
    """A channel to one gateway. With `credentials` it speaks mTLS on the main port; with `token` (and a CA
    bundle to verify the gateway) it speaks to the public port with a bearer token."""

    def __init__(
        self,
        target: str,
        credentials: Credentials | None = None,
        *,
        token: str = "",
        ca_pem: bytes = b"",
        timeout: float = 30.0,
    ) -> None:
        if token:
            channel_credentials = grpc.composite_channel_credentials(
                grpc.ssl_channel_credentials(root_certificates=ca_pem or (credentials.ca_pem if credentials else None)),
                grpc.access_token_call_credentials(token),
            )
        elif credentials is not None:
            channel_credentials = grpc.ssl_channel_credentials(
                root_certificates=credentials.ca_pem,
                private_key=credentials.key_pem,
                certificate_chain=credentials.cert_pem,
            )
        else:
            raise ValueError("a client needs credentials (mTLS) or a token")
        self._channel = grpc.secure_channel(
            target,
            channel_credentials,
            options=[
                ("grpc.max_receive_message_length", 16 * 1024 * 1024),
                ("grpc.keepalive_time_ms", 30_000),
            ],
        )
        self._jobs = job_service_pb2_grpc.JobServiceStub(self._channel)
        self._admin = admin_service_pb2_grpc.AdminServiceStub(self._channel)
        self._enrollment = enrollment_service_pb2_grpc.EnrollmentServiceStub(self._channel)
        self._reservations = reservation_service_pb2_grpc.ReservationServiceStub(self._channel)
        self.timeout = timeout

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Callable[..., T], request: Any) -> T:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
