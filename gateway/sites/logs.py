"""The log relay: a job's output, streamed from the site that runs it, through the gateway, to one reader.

Owns: which attempt's output is read (the job's current epoch at its first placement; for a gang spread over
several sites that is the first site's part only), stream ids, asking that site with a LogRequest through the
site registry's outbox, routing the site's chunks to the stream's buffer (a chunk for a stream that site did not
open is dropped, so no site can write into another site's stream), flow control by credit (site.proto rules
15-17: the site starts with `WINDOW_BYTES` of credit and is granted more only as the reader consumes, so the
gateway holds at most that much per stream whatever the reader's speed, and a slow reader slows only its own
stream), shares of the streams (a tenant holds at most `TENANT_SITE_STREAMS` of a site's `SITE_STREAMS` and
`TENANT_STREAMS` of the gateway's `MAX_STREAMS`, so one tenant's follow-mode readers never take a site's streams
from every other tenant), ending a stream whose site sends beyond its credit (an agent that ignores credit)
with an error that says so, a LogCancel when the reader goes away first, and ending the readers of a site whose
stream ends with an error naming it.
It does not decide who may read a job (`gateway.trust.access`, through `JobService.get_job`, before `stream` is
called) and does not speak gRPC (`gateway.transport` turns chunks and errors into messages and statuses).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from gateway.errors import FailedPrecondition, GatewayError, NotFound, ResourceExhausted, Unavailable
from gateway.jobs.model import Job, JobState
from gateway.sites.registry import LogCancelCommand, LogCreditCommand, LogRequestCommand, SiteRegistry

log = logging.getLogger("fedgate.gateway.logs")

CHUNK_BYTES = 64 * 1024
"""Most output bytes handed to a reader at once (the contract's limit per message)."""
WINDOW_BYTES = 1024 * 1024
"""Output the gateway holds per log stream at most: the site's first credit, and the most it is ever owed
(what waits for the reader plus what the site may still send). 1 MiB keeps a loopback reader near 100 MB/s."""
GRANT_BYTES = WINDOW_BYTES // 4
"""Output the reader consumes before it is granted back to the site as credit (fewer, larger LogCredits)."""
MAX_STREAMS = 256
"""Log streams the gateway relays at once (so at most MAX_STREAMS x WINDOW_BYTES held for readers)."""
SITE_STREAMS = 8
"""Log streams one site serves at once (the agent's own bound, agents.core.logs.MAX_STREAMS): the gateway counts
them too, so that it can share them out before the site refuses."""
TENANT_SITE_STREAMS = 2
"""A tenant's share of one site's log streams: at most 2 of its 8, so at least three other tenants always find
streams there however many a tenant opens."""
TENANT_STREAMS = 32
"""A tenant's share of the gateway's log streams (over all sites)."""
MAX_SITE_ERROR = 500
"""Characters of a site's error text passed on to the reader."""
NOT_STARTED_STATES = frozenset({JobState.QUEUED, JobState.RESERVING, JobState.REJECTED})


@dataclass(frozen=True)
class LogPiece:
    """Part of an attempt's output, in order, and where it comes from."""

    data: bytes
    site: str
    epoch: int


@dataclass
class _Stream:
    stream_id: int
    holder: str
    """Whose share the stream draws on (`Principal.share`: the reader's tenant)."""
    site: str
    connection_id: int
    job_id: str
    epoch: int
    chunks: deque[bytes] = field(default_factory=deque)
    buffered: int = 0
    """Bytes received and not yet handed to the reader."""
    granted: int = 0
    """Credit granted to the site on this stream so far, in bytes (site.proto rule 15)."""
    received: int = 0
    """Bytes of output the site has sent on this stream so far."""
    consumed: int = 0
    """Bytes the reader consumed that are not yet granted back to the site."""
    ended: bool = False
    """The site sent its last chunk: nothing more comes, no LogCancel is needed."""
    error: GatewayError | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def finish(self, error: GatewayError | None = None) -> None:
        self.ended = True
        self.error = self.error or error
        self.wake.set()


def log_source(job: Job) -> tuple[str, int]:
    """The site and epoch whose output `stream` reads for `job`, or FailedPrecondition saying when there
    will be some. A gang's parts share the epoch; the first placement's site is read."""
    if job.state in NOT_STARTED_STATES or not job.placements:
        if job.state == JobState.REJECTED:
            why = "was rejected at admission and never ran, so it has no output"
        elif job.state.terminal:
            why = f"ended ({job.state.value}) before any site started it, so it has no output"
        elif job.attempt:
            why = f"is {job.state.value} for attempt {job.attempt + 1}; its output appears once a site starts it"
        else:
            why = f"has not started yet ({job.state.value}); its output appears once a site starts it"
        raise FailedPrecondition(
            f"job {job.job_id} {why} (`fedgate job watch {job.job_id}` shows when)", reason="JOB_NOT_STARTED"
        )
    return job.placements[0].site, job.epoch


class LogRelay:
    """Every log stream the gateway relays. All methods must be called on the gateway's event loop."""

    def __init__(
        self,
        registry: SiteRegistry,
        *,
        window_bytes: int = WINDOW_BYTES,
        grant_bytes: int = GRANT_BYTES,
        max_streams: int = MAX_STREAMS,
        site_streams: int = SITE_STREAMS,
        tenant_site_streams: int = TENANT_SITE_STREAMS,
        tenant_streams: int = TENANT_STREAMS,
    ) -> None:
        if not 0 < grant_bytes <= window_bytes:
            raise ValueError("grant_bytes must be above 0 and at most window_bytes")
        self._registry = registry
        self._window_bytes = window_bytes
        self._grant_bytes = grant_bytes
        self._max_streams = max_streams
        self._site_streams = site_streams
        self._tenant_site_streams = tenant_site_streams
        self._tenant_streams = tenant_streams
        self._streams: dict[int, _Stream] = {}
        self._ids = itertools.count(1)

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def held_bytes(self) -> int:
        """Output received from sites and not yet handed to readers, over all streams."""
        return sum(stream.buffered for stream in self._streams.values())

    async def stream(
        self, job: Job, *, reader: str = "", follow: bool = False, tail_bytes: int = 0
    ) -> AsyncGenerator[LogPiece, None]:
        """The output of the job's current attempt, from its start (or `tail_bytes` before its end), until the
        site has sent it all (with `follow`: until the attempt has also ended). Raises FailedPrecondition when
        the job has no attempt yet or the site cannot serve the log, Unavailable when the site is offline or
        goes away, TOO_MANY_LOG_STREAMS when `reader` (whose share: `Principal.share`) holds its share of the
        site's or the gateway's streams or either is full, and LOG_CREDIT_EXCEEDED when the site sends beyond
        its credit."""
        site, epoch = log_source(job)
        connection_id = self._connection_of(site, job.job_id)
        self._check_shares(reader, site)
        stream = _Stream(next(self._ids), reader, site, connection_id, job.job_id, epoch, granted=self._window_bytes)
        self._streams[stream.stream_id] = stream
        try:
            request = LogRequestCommand(
                stream.stream_id,
                job.job_id,
                epoch,
                follow=follow,
                tail_bytes=tail_bytes,
                window_bytes=self._window_bytes,
            )
            if not self._registry.send(site, request):
                raise _offline(site, job.job_id)
            while True:
                if stream.chunks:
                    data = stream.chunks.popleft()
                    stream.buffered -= len(data)
                    yield LogPiece(data, site, epoch)
                    # Back here, the reader's transport has taken the piece: the site may send that much more.
                    self._consumed(stream, len(data))
                elif stream.error is not None:
                    raise stream.error
                elif stream.ended:
                    return
                else:
                    stream.wake.clear()
                    await stream.wake.wait()
        finally:
            self._streams.pop(stream.stream_id, None)
            if not stream.ended and self._registry.is_current(site, connection_id):
                self._registry.send(site, LogCancelCommand(stream.stream_id))  # the reader left first

    def deliver(self, site: str, stream_id: int, data: bytes, *, end: bool = False, error: str = "") -> bool:
        """A chunk from `site`. Returns False (and changes nothing) for a stream that site did not open or that
        has already ended."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.site != site or stream.ended:
            if stream is not None and stream.site != site:
                log.warning("site %s sent a log chunk for stream %d of site %s; ignored", site, stream_id, stream.site)
            return False
        if data:
            if stream.received + len(data) > stream.granted:
                self._end_over_credit(stream, len(data))
                return True
            stream.received += len(data)
            for start in range(0, len(data), CHUNK_BYTES):
                stream.chunks.append(data[start : start + CHUNK_BYTES])
            stream.buffered += len(data)
        if end:
            failure = None
            if error:
                failure = FailedPrecondition(
                    f"site {site} cannot serve the output of job {stream.job_id} epoch {stream.epoch}: "
                    f"{error[:MAX_SITE_ERROR]}",
                    reason="SITE_CANNOT_SERVE_LOG",
                )
            stream.finish(failure)
        stream.wake.set()
        return True

    def site_gone(self, site: str, connection_id: int) -> None:
        """`site`'s stream `connection_id` ended: every log stream it was serving ends with an error."""
        for stream in list(self._streams.values()):
            if stream.site == site and stream.connection_id == connection_id and not stream.ended:
                stream.finish(
                    Unavailable(
                        f"site {site} disconnected while sending the output of job {stream.job_id}; "
                        "run the command again once it is back",
                        reason="SITE_DISCONNECTED",
                    )
                )

    def _check_shares(self, reader: str, site: str) -> None:
        """Refuse a new stream when the reader's share or a whole is in use. The reader's shares are checked
        first, so a tenant at its share hears that, not that the site is busy."""
        at_site = [s for s in self._streams.values() if s.site == site]
        mine = sum(1 for s in self._streams.values() if s.holder == reader)
        mine_at_site = sum(1 for s in at_site if s.holder == reader)
        for used, most, limit, what in (
            (mine_at_site, self._tenant_site_streams, "tenant_site_streams", f"your tenant's share at site {site}"),
            (mine, self._tenant_streams, "tenant_streams", "your tenant's share at the gateway"),
            (len(at_site), self._site_streams, "site_streams", f"site {site}'s own"),
            (len(self._streams), self._max_streams, "gateway_streams", "the gateway's"),
        ):
            if used >= most:
                raise ResourceExhausted(
                    f"{what} of log streams is in use ({most} at once); close a log you no longer read "
                    "(a --follow) or try again shortly",
                    reason="TOO_MANY_LOG_STREAMS",
                    metadata={"limit": limit, "max": str(most)},
                )

    def _connection_of(self, site: str, job_id: str) -> int:
        try:
            record = self._registry.get(site)
        except NotFound:
            raise _offline(site, job_id) from None
        if not record.connected:
            raise _offline(site, job_id)
        return record.connection_id

    def _consumed(self, stream: _Stream, size: int) -> None:
        stream.consumed += size
        grant = LogCreditCommand(stream.stream_id, stream.consumed)
        if stream.consumed >= self._grant_bytes and not stream.ended and self._registry.send(stream.site, grant):
            stream.granted += stream.consumed
            stream.consumed = 0

    def _end_over_credit(self, stream: _Stream, size: int) -> None:
        over = stream.received + size - stream.granted
        log.warning(
            "site %s sent %d bytes beyond its credit on log stream %d (job %s); the stream was ended",
            stream.site,
            over,
            stream.stream_id,
            stream.job_id,
        )
        stream.chunks.clear()  # the reader learns at once, not after reading what is held
        stream.buffered = 0
        # Stop the site now rather than when the reader next looks: it is still sending.
        self._registry.send(stream.site, LogCancelCommand(stream.stream_id))
        stream.finish(
            GatewayError(
                f"site {stream.site} sent the output of job {stream.job_id} faster than the gateway's flow control "
                f"allows ({over} bytes beyond its credit; its agent may predate log credit), so the log stream was "
                "ended rather than held without bound; ask for less with a tail, or have the site upgrade its agent",
                reason="LOG_CREDIT_EXCEEDED",
            )
        )


def _offline(site: str, job_id: str) -> Unavailable:
    return Unavailable(
        f"site {site}, which holds job {job_id}, is offline; its output can be read once the site reconnects",
        reason="SITE_OFFLINE",
    )
