"""One SiteService.Connect stream, from Hello to its end.

Owns: the handshake (Hello out, Welcome in), replaying every unacknowledged job update (the gateway acks those
it already holds), the send loop (capacity and the centre's terms right after Welcome, then every
report interval, on every change, and as soon as an offer window opens or closes; new job updates; acks and
replies) and the receive loop (convert, hand to the runtime, acknowledge). Only the send loop writes to the
stream, because gRPC allows one write at a time. It does not dial, reconnect or back off
(`agents.transport.connection` does) and never decides about jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

import grpc.aio

from agents import AGENT_VERSION
from agents.core.commands import UpdateRejected, Welcome
from agents.core.logs import LogServer
from agents.core.runtime import SiteRuntime
from agents.errors import ProtocolError
from agents.transport.convert import (
    capacity_to_proto,
    command_from_proto,
    hello_to_proto,
    job_update_to_proto,
    log_chunk_to_proto,
    log_command_from_proto,
    reserve_reply_to_proto,
    welcome_from_proto,
)
from fedgate.common.reasons import ReasonCode
from fedgate.common.rendezvous import RendezvousPoint
from fedgate.v1 import site_pb2

log = logging.getLogger(__name__)

ConnectCall = grpc.aio.StreamStreamCall[site_pb2.ConnectRequest, site_pb2.ConnectResponse]

WELCOME_TIMEOUT_S = 15.0
"""A gateway that accepts the stream but does not answer Hello within this is treated as down."""
HALF_CLOSE_TIMEOUT_S = 1.0
"""After the agent stops writing, how long the gateway gets to end the stream before it is cut."""

LOG_CHUNKS_PER_PASS = 16
"""Log chunks written per pass of the send loop (1 MiB at most) before reports and updates get a turn."""


class StreamEnded(Exception):
    """The gateway ended the stream without an error status; the agent reconnects."""


CONFIG_REFUSALS = frozenset({ReasonCode.UNKNOWN_ACCELERATOR_CLASS, ReasonCode.CAPACITY_OUT_OF_BOUNDS})
"""Refusals of the agent's own configuration (its pools): the same report would be refused forever."""


class CapacityRefused(Exception):
    """The gateway refused the agent's capacity for what its configuration says (a pool class the federation's
    catalogue lacks, counts out of bounds), while the agent runs no job: ends the stream, and the link stops the
    agent with the reason instead of sending the same report every interval."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{message} ({reason})")
        self.reason = reason
        self.message = message


class GatewaySession:
    """Runs one stream for a runtime. Create a new GatewaySession for every new stream."""

    def __init__(
        self,
        call: ConnectCall,
        runtime: SiteRuntime,
        *,
        report_interval_s: float,
        rendezvous: RendezvousPoint | None = None,
    ) -> None:
        self._call = call
        self._rendezvous = rendezvous
        self._runtime = runtime
        self._default_interval_s = report_interval_s
        self._wake = asyncio.Event()
        self._outbox: deque[site_pb2.ConnectRequest] = deque()
        self._sent_up_to = 0
        self._finishing = False
        self._logs = LogServer(runtime, self._wake.set)  # log streams live and die with this stream
        self._sender: asyncio.Task[None] | None = None
        self.welcomed = False
        """True once the gateway answered Hello; until then nothing but Hello is sent."""
        self.ready = asyncio.Event()
        """Set together with `welcomed`, for tasks that run beside the stream."""
        self.closing_reason = ""
        """The reason of the gateway's Closing message, when it said why it ends this stream."""

    async def run(self) -> None:
        """Handshake, then send and receive until the stream ends. Raises on any stream error."""
        welcome = await self._handshake()
        self.welcomed = True
        self.ready.set()
        self._runtime.accept_welcome(welcome.last_update_sequence)
        self._runtime.accept_lease(welcome.site_lease_s)
        self._sent_up_to = 0  # every unacknowledged update is sent again, oldest first (site.proto, rule 7)
        interval = welcome.report_interval_s or self._default_interval_s
        log.info("connected; gateway holds updates up to %d", welcome.last_update_sequence)
        unsubscribe = self._runtime.subscribe(self._wake.set)
        try:
            # The two loops live and die together: when one fails the other is cancelled and the stream ends
            # with the error (the link logs it and re-dials); the log streams of this stream end with it.
            async with asyncio.TaskGroup() as loops:
                receiver = loops.create_task(self._receive_loop(), name="agent-receive")
                self._sender = loops.create_task(self._send_then_wait(interval, receiver), name="agent-send")
        except BaseExceptionGroup as group:
            raise explaining_error(group) from None
        finally:
            unsubscribe()
            self._logs.close()

    def finish(self) -> None:
        """Send what is pending, then half-close the stream; `run` returns once the gateway ends it."""
        self._finishing = True
        self._wake.set()

    def all_sent(self) -> bool:
        return not self._runtime.unacknowledged_updates(self._sent_up_to) and not self._outbox

    async def _handshake(self) -> Welcome:
        runtime = self._runtime
        hello = hello_to_proto(
            site=runtime.site,
            agent_version=AGENT_VERSION,
            resume_cursor=runtime.resume_cursor(),
            backend=runtime.backend_name,
            running=runtime.unsettled(),
            rendezvous=self._rendezvous,
        )
        await self._call.write(site_pb2.ConnectRequest(hello=hello))
        first = await asyncio.wait_for(self._call.read(), timeout=WELCOME_TIMEOUT_S)
        if not isinstance(first, site_pb2.ConnectResponse):
            raise StreamEnded("the gateway closed the stream before answering Hello")
        if first.WhichOneof("kind") != "welcome":
            raise ProtocolError(f"the gateway's first message was {first.WhichOneof('kind')}, not welcome")
        return welcome_from_proto(first.welcome)

    async def _receive_loop(self) -> None:
        while True:
            message = await self._call.read()
            if not isinstance(message, site_pb2.ConnectResponse):
                if self._finishing:  # the gateway ended a stream we were closing: nothing more can be sent
                    if self._sender is not None:
                        self._sender.cancel()
                    return
                raise StreamEnded(f"the gateway ended the stream: {await self._status()}")
            await self._process(message)

    async def _status(self) -> str:
        """The status the gateway ended the stream with (its code and why), for the log line that says so."""
        try:
            code, details = await self._call.code(), await self._call.details()
        except Exception as exc:  # the call failed in a way that carries no status: say what we know
            return f"no status ({type(exc).__name__})"
        return f"{code.name}: {details}" if details else code.name

    async def _process(self, message: site_pb2.ConnectResponse) -> None:
        if message.WhichOneof("kind") == "closing":  # the stream's status follows; this says why in band
            self.closing_reason = message.closing.reason
            log.warning("the gateway is ending this stream (%s): %s", message.closing.reason, message.closing.message)
            return
        if (log_command := log_command_from_proto(message)) is not None:
            self._logs.handle(log_command)  # best effort: no sequence, no ack
            return
        command = command_from_proto(message)
        if (
            isinstance(command, UpdateRejected)
            and command.update_sequence == 0
            and command.reason in CONFIG_REFUSALS
            and not self._runtime.running()  # with jobs running the stream must stay up, or their site lease ends
        ):
            raise CapacityRefused(command.reason, command.message)
        if command is not None:
            reply = await self._runtime.handle(command)
            if reply is not None:
                self._outbox.append(site_pb2.ConnectRequest(reserve_reply=reserve_reply_to_proto(reply)))
        else:
            log.warning("ignoring a gateway message of kind %s", message.WhichOneof("kind"))
        if message.sequence:
            self._runtime.mark_processed(message.sequence)
            self._outbox.append(site_pb2.ConnectRequest(ack=site_pb2.Ack(sequence=message.sequence)))
        self._wake.set()

    async def _send_then_wait(self, interval_s: float, receiver: asyncio.Task[None]) -> None:
        await self._send_loop(interval_s)
        # We half-closed on purpose; the gateway ends its side once it has read everything.
        done, _ = await asyncio.wait({receiver}, timeout=HALF_CLOSE_TIMEOUT_S)
        if not done:
            receiver.cancel()  # the stream ends here; a cancelled loop is not a failure of the group

    async def _send_loop(self, interval_s: float) -> None:
        loop = asyncio.get_running_loop()
        next_report = loop.time()  # the first report goes out right after Welcome
        reported_version = -1
        offers_change: float | None = None  # loop time at which an offer window may open or close
        while True:
            wake_at = next_report if offers_change is None else min(next_report, offers_change)
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: 3.11's wait_for can lose a cancel
                async with asyncio.timeout_at(wake_at):
                    await self._wake.wait()
            self._wake.clear()
            # At least once per report interval, and right after a window boundary: a new offer is reported
            # at once rather than at the next periodic report.
            until_change = self._runtime.refresh_offers()
            offers_change = None if until_change is None else loop.time() + until_change
            if loop.time() >= next_report or self._runtime.capacity_version != reported_version:
                reported_version = self._runtime.capacity_version
                report = capacity_to_proto(self._runtime.capacity(), self._runtime.terms())
                await self._call.write(site_pb2.ConnectRequest(capacity=report))
                next_report = loop.time() + interval_s
            for update in self._runtime.unacknowledged_updates(self._sent_up_to):
                await self._call.write(site_pb2.ConnectRequest(job_update=job_update_to_proto(update)))
                self._sent_up_to = update.sequence
            while self._outbox:
                await self._call.write(self._outbox.popleft())
            # A bounded batch per pass, so a long log cannot hold back reports; a stream that put a chunk
            # since wakes this loop again.
            for chunk in self._logs.take(LOG_CHUNKS_PER_PASS):
                await self._call.write(site_pb2.ConnectRequest(log_chunk=log_chunk_to_proto(chunk)))
            if self._finishing and self.all_sent():
                await self._call.done_writing()
                return


def explaining_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that ends a stream whose loops failed: the gateway's status (read by the receiver, as an RPC
    error or as the end of the stream with its status) explains a failed write, so it comes first; otherwise
    the first error raised."""
    errors: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop(0)
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            errors.append(error)
    for kind in (grpc.aio.AioRpcError, StreamEnded):
        found = next((e for e in errors if isinstance(e, kind)), None)
        if found is not None:
            return found
    return errors[0]
