"""Dialling out to the gateway with mTLS, staying connected, and the agent's programmatic entry point.

Owns: the channel (certificates re-read on every dial so rotated files are picked up, keepalive, 4 MiB
messages), the reconnect loop with jittered exponential backoff, telling fatal refusals (PERMISSION_DENIED,
UNAUTHENTICATED -> `GatewayRefused`; so is capacity refused for a pool class the catalogue lacks, on an agent
with no jobs to keep: `CapacityRefused`) from transient failures and from refusals that may pass (a refused
stream, another agent that took this site's stream), which back off with a wait that surely grows and say so
plainly, re-dialling at once when the certificate keeper has installed renewed credentials, and
`run_agent`, which ties a runtime, a
backend, a journal and the link together until a stop is requested, owning the agent's long-lived tasks
(the link, the backend's watch) with a `Supervisor`: one that ends drains the agent and stops it with
`AgentTaskDied`. It does not decide about jobs (the runtime), run a single stream (the session) nor renew
certificates (`agents.transport.renewal`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

import grpc
import grpc.aio
from cryptography import x509

from agents.backends.base import Backend
from agents.backends.registry import open_backend
from agents.core.config import AgentConfig
from agents.core.runtime import SiteRuntime
from agents.errors import AgentTaskDied, GatewayRefused, ProtocolError
from agents.identity.credentials import utc_now
from agents.identity.renewal import RenewalSettings
from agents.journal.base import MemoryJournal, UpdateJournal
from agents.journal.sqlite import SqliteJournal
from agents.transport.backoff import Backoff
from agents.transport.metrics import serve_agent_metrics
from agents.transport.receipts import KeyFileSigner
from agents.transport.renewal import CertificateKeeper
from agents.transport.session import CapacityRefused, ConnectCall, GatewaySession, StreamEnded, explaining_error
from agents.transport.targets import GatewayTargets
from fedgate.common import wire
from fedgate.common.reasons import ReasonCode
from fedgate.common.supervise import Supervisor
from fedgate.v1 import site_pb2

log = logging.getLogger(__name__)

_SERVICE = site_pb2.DESCRIPTOR.services_by_name["SiteService"]
CONNECT_METHOD = f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name['Connect'].name}"

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    # Pings keep NAT and firewall state alive on a stream that may sit idle between reports, and reveal
    # a dead gateway within keepalive_time + keepalive_timeout instead of at the next write.
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]

FATAL_CODES = frozenset({grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED})
"""Statuses that say "not you": retrying with the same certificate cannot succeed."""

REFUSAL_CODES = frozenset(
    {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED}
)
"""Statuses that refuse what this agent sent: the same again is refused again, so the next try waits longer."""


def refusal_backoff() -> Backoff:
    """Waits after a refusal or a takeover: from 1 s, at least half the ceiling (so they surely grow), to 5 min."""
    return Backoff(base_s=1.0, cap_s=300.0, floor=0.5)


FLUSH_TIMEOUT_S = 1.5
"""At shutdown, how long to wait for the gateway to acknowledge the final job updates."""
CLOSE_TIMEOUT_S = 1.5
"""At shutdown, how long the half-closed stream gets to end before it is cut."""


class GatewayLink:
    """Keeps one Connect stream to the gateway alive for a runtime, reconnecting until closed."""

    def __init__(
        self,
        config: AgentConfig,
        runtime: SiteRuntime,
        *,
        backoff: Backoff | None = None,
        renewal: RenewalSettings | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._config = config
        self._runtime = runtime
        self._backoff = backoff or Backoff()
        self._refusals = refusal_backoff()
        self._refused_by = ""
        """Why the gateway refused the last stream, when it did (empty: it failed, or ended, on its own)."""
        self._closing = asyncio.Event()
        self._session: GatewaySession | None = None
        self._targets = GatewayTargets(config.gateways)
        self._keeper = CertificateKeeper(config.site, config.tls, renewal or RenewalSettings(), clock)
        self._renewed = False
        self.refusal: GatewayRefused | None = None
        """Why the gateway refused this site for good; set together with `refused`."""
        self.refused = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._session is not None and self._session.welcomed

    async def run(self) -> None:
        """Connect, and reconnect after every failure, until `close()`. When the gateway refuses this site for
        good, stop dialling, record it in `refusal`, set `refused` and wait for `close()`: a refusal is the
        gateway's answer, not a failure of this task (which must not end before `close()`)."""
        while not self._closing.is_set():
            try:
                await self._connect_once()
            except GatewayRefused as exc:
                self.refusal = exc
                self.refused.set()
                await self._closing.wait()
                return
            except (grpc.RpcError, StreamEnded, ProtocolError, TimeoutError, asyncio.InvalidStateError, OSError) as exc:
                log.warning("gateway %s: %s", self._targets.current, _describe(exc))
                if self._targets.follow(exc):  # a standby named the leader: go there now
                    continue
            except Exception:  # a bug in one stream ends that stream; jobs keep running and the link re-dials
                log.exception("gateway %s: the stream failed unexpectedly", self._targets.current)
            if self._closing.is_set():
                return
            if self._renewed:  # fresh credentials are on disk: use them now, not after a backoff
                self._renewed = False
                continue
            self._targets.next()
            if self._refused_by:
                delay = self._refusals.next_delay()
                log.warning("%s; trying again in %.1fs (longer after each refusal)", self._refused_by, delay)
            else:
                delay = self._backoff.next_delay()
                log.info("reconnecting to %s in %.1fs", self._targets.current, delay)
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: 3.11's wait_for can lose a cancel
                async with asyncio.timeout(delay):
                    await self._closing.wait()

    async def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> None:
        """Wait, at most `timeout_s`, until the gateway has acknowledged every job update."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        changed = asyncio.Event()
        unsubscribe = self._runtime.subscribe(changed.set)  # acks from the gateway notify too
        try:
            while self.connected and self._runtime.unacknowledged_updates() and loop.time() < deadline:
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(deadline - loop.time()):
                        await changed.wait()
        finally:
            unsubscribe()

    def close(self) -> None:
        """Stop reconnecting and half-close the current stream once its pending messages are sent."""
        self._closing.set()
        if self._session is not None:
            self._session.finish()

    async def _connect_once(self) -> None:
        credentials, certificate = self._credentials()
        channel = grpc.aio.secure_channel(self._targets.current, credentials, options=CHANNEL_OPTIONS)
        call: ConnectCall = channel.stream_stream(
            CONNECT_METHOD,
            request_serializer=site_pb2.ConnectRequest.SerializeToString,
            response_deserializer=site_pb2.ConnectResponse.FromString,
        )(None)  # requests are written with call.write
        session = GatewaySession(
            call, self._runtime, report_interval_s=self._config.report_interval_s, rendezvous=self._config.rendezvous
        )
        self._session = session
        self._refused_by = ""
        if self._closing.is_set():
            session.finish()
        try:
            # The certificate keeper lives and dies with this stream: if it fails, the stream ends (and is
            # re-dialled) with its error, rather than running on without renewal.
            async with asyncio.TaskGroup() as stream_tasks:
                keeper = stream_tasks.create_task(
                    self._keep_fresh(channel, certificate, session), name="agent-certificate"
                )
                await session.run()
                keeper.cancel()
        except BaseExceptionGroup as group:
            error = explaining_error(group)
            if isinstance(error, CapacityRefused):
                raise GatewayRefused(
                    f"the gateway refused site {self._config.site!r}'s capacity: {error.message} ({error.reason});"
                    " fix the pools in the agent's config (each class must be in the federation's catalogue,"
                    " `fedgate policy check` lists it) and start the agent again",
                    code="INVALID_ARGUMENT",
                ) from None
            if isinstance(error, grpc.aio.AioRpcError):
                code, details = error.code(), error.details()
                trailers: object = error.trailing_metadata()
            elif call.done():  # a failed write surfaces as InvalidStateError; the call's status holds the reason
                code, details = await call.code(), await call.details()
                trailers = await call.trailing_metadata()
            else:
                raise error from None
            _raise_if_fatal(code, details, self._config.site)
            self._note_refusal(code, details, trailers, session)
            raise error from None
        finally:
            if session.welcomed and not self._refused_by:
                self._backoff.reset()
                self._refusals.reset()
            if session.welcomed:
                self._targets.connected()
            self._session = None
            await channel.close(grace=None)

    def _note_refusal(
        self, code: grpc.StatusCode, details: str | None, trailers: object, session: GatewaySession
    ) -> None:
        """Remember why the gateway refused this stream, so that the next try waits longer."""
        site = self._config.site
        if session.closing_reason == ReasonCode.SITE_STREAM_TAKEN_OVER:
            self._refused_by = (
                f"another agent connected as site {site!r} and took over its stream; only one agent per site may"
                " be connected: stop the other one (same certificate?) or give each its own site"
            )
            return
        if code not in REFUSAL_CODES:
            return
        info = wire.error_info(trailers)  # type: ignore[arg-type]
        reason = info.reason if info is not None else code.name
        self._refused_by = f"the gateway refused this site's stream ({reason}: {details or 'no details'})"

    async def _keep_fresh(
        self, channel: grpc.aio.Channel, certificate: x509.Certificate | None, session: GatewaySession
    ) -> None:
        if certificate is None:
            return
        await self._keeper.keep_fresh(channel, certificate, session.ready)
        self._renewed = True
        session.finish()  # the stream ends after what is pending is sent; run() re-dials with the new files

    def _credentials(self) -> tuple[grpc.ChannelCredentials, x509.Certificate | None]:
        """Channel credentials from the files as they are now, and the certificate they present (None when
        it cannot be read: the handshake will say why, and renewal waits for a readable one)."""
        tls = self._config.tls
        cert_pem = tls.cert.read_bytes()
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.ca.read_bytes(),
            private_key=tls.key.read_bytes(),
            certificate_chain=cert_pem,
        )
        try:
            certificate: x509.Certificate | None = x509.load_pem_x509_certificates(cert_pem)[0]
        except (ValueError, IndexError) as exc:
            log.warning("cannot read %s (%s); certificate renewal is off until it is readable", tls.cert, exc)
            certificate = None
        return credentials, certificate


def _raise_if_fatal(code: grpc.StatusCode, details: str | None, site: str) -> None:
    if code in FATAL_CODES:
        raise GatewayRefused(
            f"the gateway refused site {site!r} ({code.name}: {details or 'no details'}); check that the "
            "agent's certificate was issued for this site and has not been revoked",
            code=code.name,
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


async def run_agent(
    config: AgentConfig,
    stop_event: asyncio.Event,
    *,
    backend: Backend | None = None,
    journal: UpdateJournal | None = None,
    backoff: Backoff | None = None,
    renewal: RenewalSettings | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> None:
    """Run a site agent until `stop_event` is set, then drain it: stop its jobs, send their final updates.

    The drain takes at most cancel_grace_s + 1 s (jobs), FLUSH_TIMEOUT_S (acks) and CLOSE_TIMEOUT_S
    (stream), under 10 s with the default 5 s grace.

    Raises GatewayRefused when the gateway refuses this site for good (its jobs are stopped first).
    The site certificate is renewed over the same connection at two thirds of its life (`renewal`, and
    `clock` which returns aware UTC datetimes), and the stream re-dialled with it; jobs keep running. The
    same clock dates job updates and picks the offer windows of the centre's policy.
    `backend`, `journal` and `backoff` default to the configured backend, the SQLite journal in the config's
    `state_dir` (a MemoryJournal when it has none) and the standard backoff; tests pass their own. Attempts
    the journal holds from a previous run are re-attached (or reported lost) before the first connection.
    Ended attempts carry usage receipts signed with the key in `tls.key`.
    """
    owned = SqliteJournal.in_directory(config.state_dir) if journal is None and config.state_dir else None
    journal = journal or owned or MemoryJournal()
    signer = KeyFileSigner(config.tls.key)
    backend = backend or await open_backend(config.backend)
    guard = getattr(backend, "guard_secrets", None)  # optional hook: a backend whose jobs share this machine
    if guard is not None:
        guard(config.tls.key, config.state_dir)
    runtime = SiteRuntime(config, backend, journal, clock=clock, signer=signer)
    await runtime.restore()
    link = GatewayLink(config, runtime, backoff=backoff, renewal=renewal, clock=clock)
    metrics = await serve_agent_metrics(config, runtime, lambda: link.connected)  # None: not configured
    tasks = Supervisor(log)
    link_task = tasks.spawn(link.run(), "gateway link")
    watch = getattr(backend, "watch", None)  # optional hook: a backend's own loop (slurm's poll, kubernetes' watch)
    if watch is not None:
        tasks.spawn(watch(), f"{backend.name} watch")
    waits = {
        asyncio.create_task(stop_event.wait(), name="agent-stop"),
        asyncio.create_task(tasks.wait_failure(), name="agent-task-failure"),
        asyncio.create_task(link.refused.wait(), name="agent-refused"),
    }
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
        tasks.begin_stop()
        log.info("stopping: refusing launches, then stopping running jobs unless the engine keeps them")
        # Jobs stop while the stream is still up, so their final updates reach the gateway (those that cannot
        # stay in the journal, and are sent by the next start).
        await runtime.shutdown(timeout_s=config.cancel_grace_s + 1.0)
        await link.flush()
        link.close()
        await asyncio.wait({link_task}, timeout=CLOSE_TIMEOUT_S)
        if metrics is not None:
            metrics.close()
        try:
            await tasks.stop()
        finally:
            if owned is not None:
                owned.close()
    if link.refusal is not None:
        raise link.refusal
    if tasks.failure is not None:
        raise AgentTaskDied(f"stopped because {tasks.failure.describe()}")
    log.info("stopped")
