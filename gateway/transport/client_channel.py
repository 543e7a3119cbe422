"""The client's one channel to a gateway and the one place a call is made and a refusal translated.

Owns: the channel (mTLS or a bearer token, keepalive, message limits), the service stubs on it, `_call` (every
unary call, with the client's timeout) and `error_from_rpc`, which turns a refused call into `ClientError` with
the gRPC code, the server's reason code, its message, metadata and violations (every bad field, every admission
reason: `gateway.transport.errors.violations_from_status`); and following the leader among several gateways on
one store: the target may list several addresses (`host:port,host:port`), a call refused UNAVAILABLE is tried
on the leader a standby names (NOT_LEADER), else on the next address (so is one that missed its deadline),
at most twice round the list; a call that finds no gateway is told apart from one whose TLS handshake
failed (`tls_check`: an expired or wrong-CA certificate, a host name the certificate does not name). Every
call the client makes is safe to repeat (job and reservation creation carry a request id). It owns no RPC of its
own: those are in `client_jobs`, `client_reservations` and `client_admin`, put together in `gateway.transport.client`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedgate.common import wire
from fedgate.v1 import (
    admin_service_pb2_grpc,
    enrollment_service_pb2_grpc,
    job_service_pb2_grpc,
    reservation_service_pb2_grpc,
)
from gateway.errors import ClientError
from gateway.transport import tls_check
from gateway.transport.errors import violations_from_status
from gateway.trust.credentials import Credentials

T = TypeVar("T")
LEADER_SERVICE = "fedgate.v1.JobService"
"""The service whose health tells the leader (SERVING) from a standby (NOT_SERVING)."""


def error_from_rpc(error: grpc.RpcError) -> ClientError:
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    message = (error.details() if isinstance(error, grpc.Call) else str(error)) or code.name
    trailers = error.trailing_metadata() if isinstance(error, grpc.Call) else None
    info, status = wire.error_info(trailers), wire.error_status(trailers)
    violations = violations_from_status(status) if status is not None else ()
    if info is None:
        return ClientError(message, code=code.name, reason=code.name, violations=violations)
    return ClientError(message, code=code.name, reason=info.reason, metadata=dict(info.metadata), violations=violations)


class _Stubs:
    """A service's stub that resolves the channel in use at each call, so a retry goes where the leader is."""

    def __init__(self, owner: ClientChannel, make: Callable[[grpc.Channel], Any]) -> None:
        self._owner = owner
        self._make = make
        self._by_target: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            target = self._owner.target
            if target not in self._by_target:
                self._by_target[target] = self._make(self._owner.channel_to(target))
            return getattr(self._by_target[target], name)(*args, **kwargs)

        return call


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
        # Kept for `tls_check.diagnose`, which tells a refused handshake from a gateway that is not there.
        self._probe_pems = (
            (ca_pem or (credentials.ca_pem if credentials else b""), b"", b"")
            if token
            else ((credentials.ca_pem, credentials.cert_pem, credentials.key_pem) if credentials else (b"", b"", b""))
        )
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
        self._credentials = channel_credentials
        self._targets = [t.strip() for t in target.split(",") if t.strip()]
        if not self._targets:
            raise ValueError("a client needs a gateway address")
        self.target = self._targets[0]
        self._channels: dict[str, grpc.Channel] = {}
        self._jobs: Any = _Stubs(self, job_service_pb2_grpc.JobServiceStub)
        self._admin: Any = _Stubs(self, admin_service_pb2_grpc.AdminServiceStub)
        self._enrollment: Any = _Stubs(self, enrollment_service_pb2_grpc.EnrollmentServiceStub)
        self._reservations: Any = _Stubs(self, reservation_service_pb2_grpc.ReservationServiceStub)
        self.timeout = timeout

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def leads(self, timeout: float = 2.0) -> bool:
        """Whether the gateway at this client's first address leads: its grpc health reports
        `fedgate.v1.JobService` SERVING (a standby reports NOT_SERVING; an unreachable one is False). Asks that
        address only: it is how a probe or a test tells the leader among several gateways."""
        target = self._targets[0]
        try:
            reply = health_pb2_grpc.HealthStub(self.channel_to(target)).Check(
                health_pb2.HealthCheckRequest(service=LEADER_SERVICE), timeout=timeout
            )
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def channel_to(self, target: str) -> grpc.Channel:
        if target not in self._channels:
            self._channels[target] = grpc.secure_channel(
                target,
                self._credentials,
                options=[
                    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
                    ("grpc.keepalive_time_ms", 30_000),
                ],
            )
        return self._channels[target]

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def _call(self, method: Callable[..., T], request: Any) -> T:
        tries = 2 * len(self._targets) + 1
        while True:
            tries -= 1
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as exc:
                if tries <= 0 or not self._move_on(exc):
                    raise self._explained(exc) from None

    def _explained(self, error: grpc.RpcError) -> ClientError:
        """The call's error; when it is UNAVAILABLE and a TLS handshake with the gateway fails, what failed."""
        failure = error_from_rpc(error)
        if failure.code != "UNAVAILABLE" or failure.reason != "UNAVAILABLE" or not self._probe_pems[0]:
            return failure
        problem = tls_check.diagnose(self.target, *self._probe_pems)
        if problem is None:
            return failure
        return ClientError(problem.message, code=failure.code, reason=problem.reason, metadata={"target": self.target})

    def _move_on(self, error: grpc.RpcError) -> bool:
        """After an UNAVAILABLE: point at the leader named, else at the next address. After a deadline missed
        (a gateway paused or cut off: it accepts but does not answer), the next address too. False: nowhere to
        go, the error stands."""
        if not isinstance(error, grpc.Call):
            return False
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and len(self._targets) > 1:
            self.target = self._targets[(self._targets.index(self.target) + 1) % len(self._targets)]
            return True
        if error.code() != grpc.StatusCode.UNAVAILABLE:
            return False
        leader = wire.leader_named(error.trailing_metadata())
        if leader and leader != self.target:
            if leader not in self._targets:
                self._targets.append(leader)
            self.target = leader
            return True
        if len(self._targets) < 2:
            return False
        self.target = self._targets[(self._targets.index(self.target) + 1) % len(self._targets)]
        return True
