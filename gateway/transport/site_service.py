"""SiteService.Connect: the agent's one long-lived stream, bound to the site named in its certificate.

Owns: the stream's life (Hello first, then four tasks in one TaskGroup: a reader applying the agent's
messages, an answerer replying to them in the order they came, a forwarder turning the site's commands into
messages, and a credential re-check; the response generator writes what they queue), per-message refusals (a
`Rejection`, never a silent drop), and the translation of commands to messages. The reader hands each job
update to the dispatcher's group commit and reads on; the answerer waits for each update's commit in turn, so
that an Ack never overtakes an earlier update's answer and is sent only once its update is durable. When one
of the four fails, the others are cancelled and that stream alone ends with INTERNAL, its traceback logged; the
gateway and other sites' streams go on, and the agent re-dials. Decisions are made by `Dispatcher`; a few
asyncio tasks per stream (and one per job update awaiting its commit), no threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeAlias

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fedgate.common import wire
from fedgate.common.rendezvous import Rendezvous, RendezvousPoint
from fedgate.v1 import job_pb2, site_pb2_grpc
from fedgate.v1 import site_pb2 as pb
from gateway.errors import GatewayError, InvalidArgument, PermissionDenied, StoreError, Unavailable
from gateway.identity.revocation import Credential
from gateway.reservations.model import BookCommand, ReleaseCommand
from gateway.sites.dispatcher import Dispatcher, RunningAttempt, SiteUpdate
from gateway.sites.model import SiteTerms
from gateway.sites.registry import (
    AbortCommand,
    CancelCommand,
    Command,
    CommitCommand,
    LaunchCommand,
    LogCancelCommand,
    LogCreditCommand,
    LogRequestCommand,
    PreemptCommand,
    ReserveCommand,
    StreamClosed,
)
from gateway.transport import convert
from gateway.transport.auth import Authenticator, Guarded
from gateway.transport.errors import translate_stream_errors
from gateway.transport.receipts import receipt_from_proto
from gateway.transport.reservation_convert import booking_command_to_proto
from gateway.trust import access
from gateway.trust.service import Trust
from gateway.usage.receipts import ReceiptInvalid

log = logging.getLogger("fedgate.gateway.sites")
Context = grpc.aio.ServicerContext[Any, Any]
HELLO_TIMEOUT_S = 10.0
"""An agent's Hello must arrive within this of the stream opening (site.proto states it)."""
MAX_SEQUENCE = 2**63 - 1
"""The largest sequence number the protocol admits: the fields are uint64 on the wire, but the stores keep
signed 64-bit integers. A larger one is refused as SEQUENCE_OUT_OF_RANGE, never an INTERNAL end of the stream."""
Outgoing: TypeAlias = pb.ConnectResponse | GatewayError | None
MAX_UNANSWERED = 1024
"""Messages a stream's reader takes in ahead of their answers (job updates waiting for their commit)."""


@dataclass(frozen=True)
class _Last:
    """The reader's last item for the answerer: the stream's end (None) or the error that ends it."""

    outgoing: Outgoing


Answer: TypeAlias = "asyncio.Future[pb.ConnectResponse | None] | _Last"


def _rendezvous_point(hello: pb.Hello) -> RendezvousPoint | None:
    """The site's rendezvous point from its Hello (None: it offers none); INVALID_ARGUMENT when unusable."""
    if not hello.HasField("rendezvous"):
        return None
    given = hello.rendezvous
    point = RendezvousPoint(given.host, given.first_port, given.last_port)
    if problem := point.problem():
        raise InvalidArgument(f"Hello: {problem}; fix rendezvous: in the agent's config", reason="BAD_RENDEZVOUS")
    return point


def _rendezvous_to_proto(world: Rendezvous | None) -> pb.Rendezvous | None:
    if world is None:
        return None
    return pb.Rendezvous(
        nnodes=world.nnodes,
        first_rank=world.first_rank,
        world_size=world.world_size,
        master_addr=world.master_addr,
        master_port=world.master_port,
    )


def command_to_proto(sequence: int, command: Command) -> pb.ConnectResponse:
    if isinstance(command, LaunchCommand):
        return pb.ConnectResponse(
            sequence=sequence,
            launch=pb.Launch(
                job_id=command.job_id,
                epoch=command.epoch,
                attempt=command.attempt,
                tenant=command.tenant,
                project=command.project,
                accelerator_class=command.accelerator_class,
                cards=command.cards,
                run=job_pb2.StackRun(
                    stack=command.run.stack, image=command.run.image, command=list(command.run.command)
                ),
                max_runtime=convert.duration_to_proto(command.max_runtime),
                env=dict(command.env),
                labels=dict(command.labels),
                nodes=command.nodes,
                rendezvous=_rendezvous_to_proto(command.rendezvous),
            ),
        )
    if isinstance(command, CancelCommand):
        return pb.ConnectResponse(
            sequence=sequence,
            cancel=pb.Cancel(job_id=command.job_id, epoch=command.epoch, reason=command.reason),
        )
    if isinstance(command, LogRequestCommand):
        request = pb.LogRequest(
            stream_id=command.stream_id,
            job_id=command.job_id,
            epoch=command.epoch,
            follow=command.follow,
            tail_bytes=command.tail_bytes,
            window_bytes=command.window_bytes,
        )
        return pb.ConnectResponse(sequence=sequence, log_request=request)
    if isinstance(command, LogCancelCommand):
        return pb.ConnectResponse(sequence=sequence, log_cancel=pb.LogCancel(stream_id=command.stream_id))
    if isinstance(command, LogCreditCommand):
        credit = pb.LogCredit(stream_id=command.stream_id, bytes=command.bytes)
        return pb.ConnectResponse(sequence=sequence, log_credit=credit)
    if isinstance(command, BookCommand | ReleaseCommand):
        return booking_command_to_proto(sequence, command)
    if isinstance(command, PreemptCommand):
        grace = convert.duration_to_proto(timedelta(seconds=command.grace_s))
        return pb.ConnectResponse(
            sequence=sequence, preempt=pb.Preempt(job_id=command.job_id, epoch=command.epoch, grace_period=grace)
        )
    if isinstance(command, ReserveCommand):
        return pb.ConnectResponse(sequence=sequence, reserve=convert.reserve_to_proto(command))
    if isinstance(command, CommitCommand):
        return pb.ConnectResponse(sequence=sequence, commit=pb.Commit(reservation_id=command.reservation_id))
    if isinstance(command, AbortCommand):
        return pb.ConnectResponse(
            sequence=sequence, abort=pb.Abort(reservation_id=command.reservation_id, reason=command.reason)
        )
    return pb.ConnectResponse(sequence=sequence, drain=pb.Drain(draining=command.draining))


def update_from_proto(msg: pb.JobUpdate, certificate: bytes = b"") -> SiteUpdate:
    """`certificate`: DER of the certificate the site presented on this stream (receipts must verify under it)."""
    if msg.sequence == 0:
        raise InvalidArgument("a job update needs a sequence number above 0", reason="MISSING_SEQUENCE")
    check_sequence(msg.sequence, "JobUpdate.sequence")
    return SiteUpdate(
        job_id=msg.job_id,
        epoch=msg.epoch,
        state=convert.state_from_proto(msg.state),
        sequence=msg.sequence,
        time=convert.time_from_proto(msg.time),
        exit_code=convert.exit_code_from_proto(msg),
        message=msg.message[:1024],
        device_indices=tuple(msg.device_indices),
        lease_returned=msg.lease_returned,
        receipt=receipt_from_proto(msg.receipt) if msg.HasField("receipt") else None,
        site_certificate=certificate,
    )


def check_sequence(value: int, field: str) -> None:
    if value > MAX_SEQUENCE:
        raise InvalidArgument(
            f"{field} {value} is above 2^63-1, the largest sequence number the protocol admits",
            reason="SEQUENCE_OUT_OF_RANGE",
        )


def rejection(error: GatewayError, update_sequence: int = 0) -> pb.ConnectResponse:
    cursor = int(error.metadata.get("last_update_sequence", "0"))
    return pb.ConnectResponse(
        rejection=pb.Rejection(
            update_sequence=update_sequence,
            reason=error.reason,
            message=error.message,
            last_update_sequence=cursor,
        )
    )


class SiteServicer(Guarded, site_pb2_grpc.SiteServiceServicer):
    def __init__(
        self,
        dispatcher: Dispatcher,
        auth: Authenticator,
        trust: Trust,
        report_interval: timedelta,
        check_period: float = 1.0,
        site_lease: timedelta | None = None,
    ) -> None:
        self.site_lease = site_lease
        """Told to every agent in Welcome, so that it fences its attempts within it."""
        self.dispatcher = dispatcher
        self.auth = auth
        self.trust = trust
        self.report_interval = report_interval
        self.check_period = check_period

    @translate_stream_errors
    async def Connect(
        self, request_iterator: AsyncIterator[pb.ConnectRequest], context: Context
    ) -> AsyncIterator[pb.ConnectResponse]:
        credential = self.auth.credential(context)
        principal = credential.principal
        access.require_role(principal, "site")
        try:
            first = await asyncio.wait_for(anext(request_iterator), HELLO_TIMEOUT_S)
        except (TimeoutError, StopAsyncIteration):
            raise InvalidArgument(
                f"an agent must send Hello within {HELLO_TIMEOUT_S:.0f} s of connecting", reason="NO_HELLO"
            ) from None
        if first.WhichOneof("kind") != "hello":
            raise InvalidArgument("the first message on a site stream must be Hello", reason="NO_HELLO")
        hello = first.hello
        if hello.site != principal.name:
            raise PermissionDenied(
                f"certificate of site {principal.name!r} cannot speak for site {hello.site!r}",
                reason="SITE_MISMATCH",
            )
        check_sequence(hello.resume_cursor, "Hello.resume_cursor")
        running = [RunningAttempt(r.job_id, r.epoch, convert.state_from_proto(r.state)) for r in hello.running]
        point = _rendezvous_point(hello)
        session = self.dispatcher.hello(principal.name, hello.agent_version[:64], running, hello.resume_cursor, point)
        log.info("site %s connected (agent %s)", session.site, hello.agent_version[:64])
        for attempt, why in session.cancelled:
            self.trust.audit(
                "site.attempt_cancelled",
                principal.uri,
                {"job_id": attempt.job_id[:64], "epoch": str(attempt.epoch), "message": why[:300]},
            )
        certificate = _presented_certificate(context)
        out: asyncio.Queue[Outgoing] = asyncio.Queue()
        tasks = asyncio.create_task(
            self._run_tasks(session.site, out, request_iterator, session.outbox, credential, certificate),
            name=f"site-{session.site}",
        )
        try:
            yield pb.ConnectResponse(
                welcome=pb.Welcome(
                    last_update_sequence=session.last_update_sequence,
                    report_interval=convert.duration_to_proto(self.report_interval),
                    site_lease=convert.duration_to_proto(self.site_lease) if self.site_lease else None,
                )
            )
            while True:
                item = await out.get()
                if item is None:
                    return
                if isinstance(item, GatewayError):
                    raise item
                yield item
        finally:
            tasks.cancel()
            await asyncio.gather(tasks, return_exceptions=True)
            self.dispatcher.goodbye(session.site, session.connection_id)
            log.info("site %s disconnected", session.site)

    async def _run_tasks(
        self,
        site: str,
        out: asyncio.Queue[Outgoing],
        requests: AsyncIterator[pb.ConnectRequest],
        outbox: asyncio.Queue[tuple[int, Command] | StreamClosed | None],
        credential: Credential,
        certificate: bytes,
    ) -> None:
        """The stream's four tasks, as one group: each ends the stream by queueing its last item (None or an
        error) and returning; the response generator then cancels the group. One that raises cancels the
        others and ends this stream (INTERNAL), logged with its traceback; it never reaches the gateway."""
        answers: asyncio.Queue[Answer] = asyncio.Queue(MAX_UNANSWERED)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._read(site, requests, answers, certificate), name=f"site-{site}-read")
                group.create_task(self._answer(answers, out), name=f"site-{site}-answer")
                group.create_task(self._forward(outbox, out), name=f"site-{site}-forward")
                group.create_task(self._recheck(credential, out), name=f"site-{site}-recheck")
        except* grpc.RpcError as failed:  # the agent's side of the call broke: nothing more to say to it
            log.info("site %s: the stream broke: %s", site, failed.exceptions[0])
            await out.put(None)
        except* Exception as failed:  # a bug must end this stream, not the gateway
            log.error("site %s: a stream task failed; ending this stream", site, exc_info=failed.exceptions[0])
            await out.put(GatewayError("internal error on the site stream", reason="INTERNAL"))

    async def _recheck(self, credential: Credential, out: asyncio.Queue[Outgoing]) -> None:
        """Cut the stream within `check_period` s of its certificate being revoked or expiring."""
        while True:
            await asyncio.sleep(self.check_period)
            try:
                self.trust.check(credential)
            except GatewayError as exc:
                self.trust.audit(
                    "stream.cut", credential.principal.uri, {"reason": exc.reason, "message": exc.message[:300]}
                )
                await out.put(exc)
                return

    async def _forward(
        self, outbox: asyncio.Queue[tuple[int, Command] | StreamClosed | None], out: asyncio.Queue[Outgoing]
    ) -> None:
        while True:
            item = await outbox.get()
            if item is None:  # a newer stream of the same site replaced this one
                await out.put(None)
                return
            if isinstance(item, StreamClosed):  # the site is lost, or the gateway stops: say why, in band first
                await out.put(pb.ConnectResponse(closing=pb.Closing(reason=item.reason, message=item.message)))
                await out.put(Unavailable(item.message, reason=item.reason))
                return
            await out.put(command_to_proto(*item))

    async def _read(
        self,
        site: str,
        requests: AsyncIterator[pb.ConnectRequest],
        answers: asyncio.Queue[Answer],
        certificate: bytes = b"",
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for message in requests:
                if message.WhichOneof("kind") == "job_update":
                    update = message.job_update
                    committed = self._submit_update(site, update, certificate)
                    await answers.put(asyncio.ensure_future(self._answer_update(site, update, committed)))
                    continue
                reply = loop.create_future()
                reply.set_result(self._handle(site, message))
                await answers.put(reply)
        except GatewayError as exc:
            await answers.put(_Last(exc))
            return
        await answers.put(_Last(None))

    async def _answer(self, answers: asyncio.Queue[Answer], out: asyncio.Queue[Outgoing]) -> None:
        """Reply to the agent's messages in the order they came, each once its answer is known; a job update
        the store could not make durable ends the stream (UNAVAILABLE) with no answer, nor any after it."""
        try:
            while not isinstance(item := await answers.get(), _Last):
                try:
                    reply = await item
                except (StoreError, Unavailable) as exc:
                    await out.put(exc)
                    return
                if reply is not None:
                    await out.put(reply)
            await out.put(item.outgoing)
        finally:
            while not answers.empty():  # never answered: their outcome is not to be logged as unretrieved
                if not isinstance(left := answers.get_nowait(), _Last):
                    left.cancel()

    def _submit_update(
        self, site: str, update: pb.JobUpdate, certificate: bytes
    ) -> asyncio.Future[ReceiptInvalid | None]:
        try:
            return self.dispatcher.submit(site, update_from_proto(update, certificate))
        except GatewayError as exc:  # refused before it reached the group commit (a bad sequence number)
            refused: asyncio.Future[ReceiptInvalid | None] = asyncio.get_running_loop().create_future()
            refused.set_exception(exc)
            return refused

    async def _answer_update(
        self, site: str, message: pb.JobUpdate, committed: asyncio.Future[ReceiptInvalid | None]
    ) -> pb.ConnectResponse:
        """The answer to one job update once its commit is done: Ack when durable (or a replay), Rejection when
        refused; raises the store's error when it could not be made durable."""
        sequence = message.sequence
        try:
            refused = await committed
        except (StoreError, Unavailable) as exc:
            # The store could not make it durable (unreachable, full, or this gateway no longer leads): not the
            # site's fault, and not an answer. The stream ends with UNAVAILABLE; the agent keeps the update
            # (never acked) and sends it again on its next stream (site.proto, rules 6 and 7).
            log.warning("site %s: update %d not applied, ending the stream: %s", site, sequence, exc.message)
            raise
        except GatewayError as exc:
            log.warning("site %s: update %d refused: %s (%s)", site, sequence, exc.message, exc.reason)
            self.trust.audit(
                "site.update_refused",
                f"spiffe://{self.trust.federation}/site/{site}",
                {"job_id": message.job_id[:64], "reason": exc.reason, "message": exc.message[:300]},
            )
            return rejection(exc, sequence)
        if refused is not None:  # the end was applied; its receipt was not settled
            log.warning("site %s: receipt of job %s refused: %s", site, message.job_id, refused.message)
            self.trust.audit(
                "receipt.refused",
                f"spiffe://{self.trust.federation}/site/{site}",
                {
                    "job_id": message.job_id[:64],
                    "epoch": str(message.epoch),
                    "reason": refused.reason,
                    "message": refused.message[:300],
                },
            )
        return pb.ConnectResponse(ack=pb.Ack(sequence=sequence))

    def _handle(self, site: str, message: pb.ConnectRequest) -> pb.ConnectResponse | None:
        """Every message but a job update (`_submit_update`): applied at once; a reply, or None."""
        kind = message.WhichOneof("kind")
        if kind == "capacity":
            try:
                pools = [convert.pool_from_proto(p) for p in message.capacity.pools]
                self.dispatcher.check_pools(pools)
            except GatewayError as exc:
                log.warning("site %s: capacity report refused: %s", site, exc.message)
                return rejection(exc)
            terms = None
            if message.capacity.HasField("terms"):
                terms = wire.terms_from_proto(message.capacity.terms, SiteTerms)
            self.dispatcher.capacity(site, pools, message.capacity.full, terms)
            return None
        if kind == "reserve_reply":  # a gang part's or an advance booking's: the dispatcher routes by id
            answer = message.reserve_reply
            try:
                self.dispatcher.reserve_reply(
                    site, answer.reservation_id[:128], answer.accepted, answer.reason[:1024], answer.free
                )
            except GatewayError as exc:
                return rejection(exc)
            return None
        if kind == "ack":  # the agent processed our messages up to here: they are not sent again
            try:
                check_sequence(message.ack.sequence, "Ack.sequence")
            except GatewayError as exc:
                return rejection(exc)
            self.dispatcher.acknowledged(site, message.ack.sequence)
            return None
        if kind == "log_chunk":  # best effort: a chunk for a stream this site did not open is dropped
            chunk = message.log_chunk
            self.dispatcher.deliver_log(site, chunk.stream_id, chunk.data, end=chunk.end, error=chunk.error)
            return None
        if kind == "hello":
            raise InvalidArgument("Hello may only be sent once per stream", reason="DUPLICATE_HELLO")
        return rejection(
            GatewayError(f"{kind or 'empty'} messages are not supported by this gateway", reason="UNSUPPORTED_MESSAGE")
        )


def _presented_certificate(context: Context) -> bytes:
    """DER of the client certificate on this stream (TLS verified it); usage receipts must verify under it."""
    pems = list(context.auth_context().get("x509_pem_cert") or ())
    if not pems:
        return b""
    return x509.load_pem_x509_certificate(pems[0]).public_bytes(serialization.Encoding.DER)
