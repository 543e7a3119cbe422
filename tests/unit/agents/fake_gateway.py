"""A scriptable stand-in for the gateway's SiteService, served by a real grpc.aio server with mTLS.

Each Connect becomes a `FakeStream` the test drives: read what the agent sent, send commands, end or abort
the stream. Every wait is bounded so that a broken agent fails a test instead of hanging it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from fedgate.v1 import enrollment_service_pb2 as enrollment_pb
from fedgate.v1 import enrollment_service_pb2_grpc, site_pb2, site_pb2_grpc
from gateway.sites.registry import Command

from .gateway_wire import gateway_message
from .pki import MintedPki, sign_csr

TIMEOUT_S = 5.0


@dataclass
class _Abort:
    code: grpc.StatusCode
    details: str


_END = object()


@dataclass
class FakeStream:
    """One agent stream as the gateway sees it."""

    hello: site_pb2.Hello
    received: asyncio.Queue[site_pb2.ConnectRequest | None] = field(default_factory=asyncio.Queue)
    outgoing: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    history: list[site_pb2.ConnectRequest] = field(default_factory=list)
    _sequence: int = 0

    async def next(self, kind: str, wait_s: float = TIMEOUT_S) -> site_pb2.ConnectRequest:
        """The next message of `kind` (hello, capacity, job_update, reserve_reply, ack), skipping others."""
        async with asyncio.timeout(wait_s):
            while True:
                message = await self.received.get()
                if message is None:
                    raise AssertionError(f"the agent closed the stream while we waited for {kind}")
                if message.WhichOneof("kind") == kind:
                    return message

    async def update(self, state: int | None = None, wait_s: float = TIMEOUT_S) -> site_pb2.JobUpdate:
        """The next job update, optionally the next one in `state`."""
        async with asyncio.timeout(wait_s):
            while True:
                update = (await self.next("job_update", wait_s)).job_update
                if state is None or update.state == state:
                    return update

    async def closed_by_agent(self, wait_s: float = TIMEOUT_S) -> None:
        async with asyncio.timeout(wait_s):
            while await self.received.get() is not None:
                pass

    def send(self, **kind: Any) -> int:
        """Send a ConnectResponse with the next gateway sequence number; returns that number."""
        self._sequence += 1
        self.outgoing.put_nowait(site_pb2.ConnectResponse(sequence=self._sequence, **kind))
        return self._sequence

    def send_command(self, command: Command, *, sequenced: bool = True) -> int:
        """Send what the gateway itself sends for `command` (its own encoder), numbered unless `sequenced` is
        False (log requests and replies ride outside the sequence); returns the number (0 when unnumbered)."""
        if sequenced:
            self._sequence += 1
        sequence = self._sequence if sequenced else 0
        self.outgoing.put_nowait(gateway_message(command, sequence))
        return sequence

    def send_unsequenced(self, **kind: Any) -> None:
        self.outgoing.put_nowait(site_pb2.ConnectResponse(**kind))

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.outgoing.put_nowait(_Abort(code, details))

    def end(self) -> None:
        self.outgoing.put_nowait(_END)


class FakeGateway(site_pb2_grpc.SiteServiceServicer):
    """Accepts agents whose Hello names `expected_site`; refuses others with PERMISSION_DENIED."""

    def __init__(self, expected_site: str = "centre-a") -> None:
        self.expected_site = expected_site
        self.last_update_sequence = 0
        self.report_interval_s = 0.2
        self.streams: asyncio.Queue[FakeStream] = asyncio.Queue()
        self.admit = asyncio.Event()
        """Cleared, Hello is read but Welcome is held back: the agent is stuck between streams."""
        self.admit.set()
        self.hellos: list[site_pb2.Hello] = []
        self.peers: list[bytes] = []
        """The client certificate (PEM) each Connect came with."""
        self.auto_ack = True
        """Acknowledge each job update as it arrives, as the real gateway does once it is durable."""

    async def next_stream(self, wait_s: float = TIMEOUT_S) -> FakeStream:
        return await asyncio.wait_for(self.streams.get(), wait_s)

    async def Connect(
        self,
        request_iterator: AsyncIterator[site_pb2.ConnectRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        self.peers.extend(context.auth_context().get("x509_pem_cert") or ())
        first = await context.read()
        assert isinstance(first, site_pb2.ConnectRequest) and first.HasField("hello")
        self.hellos.append(first.hello)
        if first.hello.site != self.expected_site:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"certificate is not for {first.hello.site}")
        await self.admit.wait()
        stream = FakeStream(hello=first.hello)
        stream.history.append(first)
        welcome = site_pb2.Welcome(last_update_sequence=self.last_update_sequence)
        welcome.report_interval.FromMilliseconds(int(self.report_interval_s * 1000))
        await context.write(site_pb2.ConnectResponse(welcome=welcome))
        self.streams.put_nowait(stream)
        reader = asyncio.create_task(self._pump(context, stream, self.auto_ack))
        try:
            while True:
                item = await stream.outgoing.get()
                if item is _END:
                    return
                if isinstance(item, _Abort):
                    await context.abort(item.code, item.details)
                await context.write(item)
        finally:
            reader.cancel()

    @staticmethod
    async def _pump(context: grpc.aio.ServicerContext[Any, Any], stream: FakeStream, auto_ack: bool) -> None:
        try:
            while True:
                message = await context.read()
                if not isinstance(message, site_pb2.ConnectRequest):
                    stream.outgoing.put_nowait(_END)  # the agent half-closed: end our side too
                    break
                stream.history.append(message)
                stream.received.put_nowait(message)
                if auto_ack and message.HasField("job_update"):
                    stream.send_unsequenced(ack=site_pb2.Ack(sequence=message.job_update.sequence))
        finally:
            stream.received.put_nowait(None)


@dataclass
class Refusal:
    code: grpc.StatusCode
    message: str
    reason: str = ""


class FakeEnrollment(enrollment_service_pb2_grpc.EnrollmentServiceServicer):
    """Signs CSRs with the test CA. Enroll checks `token`; `refuse` makes every call fail with a rich status."""

    def __init__(self, pki: MintedPki, site: str = "centre-a", token: str = "fgj_good") -> None:
        self.pki = pki
        self.site = site
        self.token = token
        self.refuse: Refusal | None = None
        self.enroll_requests: list[enrollment_pb.EnrollRequest] = []
        self.renew_requests: list[enrollment_pb.RenewCertificateRequest] = []
        self.renew_peers: list[bytes] = []
        """The client certificate (PEM) each RenewCertificate call came with."""

    async def Enroll(
        self, request: enrollment_pb.EnrollRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> enrollment_pb.EnrollResponse:
        self.enroll_requests.append(request)
        if request.join_token != self.token:
            await _abort(context, Refusal(grpc.StatusCode.UNAUTHENTICATED, "unknown token", "JOIN_TOKEN_UNKNOWN"))
        await self._maybe_refuse(context)
        return enrollment_pb.EnrollResponse(**self._issue(request.csr_pem))

    async def RenewCertificate(
        self, request: enrollment_pb.RenewCertificateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> enrollment_pb.RenewCertificateResponse:
        self.renew_requests.append(request)
        self.renew_peers.extend(context.auth_context().get("x509_pem_cert") or ())
        await self._maybe_refuse(context)
        return enrollment_pb.RenewCertificateResponse(**self._issue(request.csr_pem))

    async def _maybe_refuse(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if self.refuse is not None:
            await _abort(context, self.refuse)

    def _issue(self, csr_pem: str) -> dict[str, Any]:
        return {
            "certificate_chain_pem": sign_csr(self.pki, csr_pem.encode(), self.site).decode(),
            "ca_bundle_pem": self.pki.ca.read_text(),
        }


async def _abort(context: grpc.aio.ServicerContext[Any, Any], refusal: Refusal) -> None:
    """Abort as the real gateway does: google.rpc.Status with an ErrorInfo in grpc-status-details-bin."""
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=refusal.reason, domain="fedgate.io"))
    status = status_pb2.Status(code=refusal.code.value[0], message=refusal.message, details=[detail])
    await context.abort(
        refusal.code,
        refusal.message,
        trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
    )


async def start_fake_gateway(
    gateway: FakeGateway, pki: MintedPki, port: int = 0, *, enrollment: FakeEnrollment | None = None
) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    site_pb2_grpc.add_SiteServiceServicer_to_server(gateway, server)
    if enrollment is not None:
        enrollment_service_pb2_grpc.add_EnrollmentServiceServicer_to_server(enrollment, server)
    credentials = grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
        root_certificates=pki.ca.read_bytes(),
        require_client_auth=True,
    )
    bound = server.add_secure_port(f"127.0.0.1:{port}", credentials)
    await server.start()
    return server, bound


async def start_public_port(enrollment: FakeEnrollment, pki: MintedPki) -> tuple[grpc.aio.Server, int]:
    """The gateway's public port: TLS without client certificates, presenting its certificate AND the CA,
    so that `fedgate agent enroll` can check the pinned fingerprint."""
    server = grpc.aio.server()
    enrollment_service_pb2_grpc.add_EnrollmentServiceServicer_to_server(enrollment, server)
    chain = pki.server_cert.read_bytes() + pki.ca.read_bytes()
    credentials = grpc.ssl_server_credentials([(pki.server_key.read_bytes(), chain)], require_client_auth=False)
    bound = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, bound
