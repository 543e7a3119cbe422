"""The site registry: which agents are connected, what they offer, and the outbound queue to each.

Owns: per-site liveness (when the gateway last heard from each site, on its own monotonic clock, and the
site's state: live, suspect, lost; `gateway.sites.liveness` judges it), pools (full reports and deltas), drain
state, and the gateway->agent command sequence: numbered from blocks reserved in the store
(`Store.reserve_site_messages`), so that it only increases across restarts and takeovers, with gaps. It keeps
the Cancel and Preempt commands a site has not acknowledged and sends them again on the site's next stream (a
Launch is resent from the job book instead, by `Dispatcher.hello`, so it survives a restart). It does not
decide placement and does not know gRPC: commands are plain dataclasses that the transport layer turns into
messages.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from fedgate.common.reasons import ReasonCode
from fedgate.common.rendezvous import Rendezvous, RendezvousPoint
from gateway.errors import NotFound
from gateway.jobs.model import StackRun
from gateway.reservations.model import BookCommand, ReleaseCommand
from gateway.sites.model import Pool, SiteTerms, SiteView


@dataclass(frozen=True)
class LaunchCommand:
    job_id: str
    epoch: int
    attempt: int
    tenant: str
    project: str
    accelerator_class: str
    cards: int
    run: StackRun
    max_runtime: timedelta
    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    nodes: int = 0
    """Nodes of this part (0: one)."""
    rendezvous: Rendezvous | None = None
    """The attempt's world (`gateway.scheduler.rendezvous`)."""


@dataclass(frozen=True)
class CancelCommand:
    job_id: str
    epoch: int
    reason: str = ""


@dataclass(frozen=True)
class PreemptCommand:
    """Stop the attempt for a more urgent job: SIGTERM (checkpoint now), `grace_s` seconds, then kill."""

    job_id: str
    epoch: int
    grace_s: int


@dataclass(frozen=True)
class DrainCommand:
    draining: bool


@dataclass(frozen=True)
class LogRequestCommand:
    """Ask the site for an attempt's output on log stream `stream_id` (see `gateway.sites.logs`)."""

    stream_id: int
    job_id: str
    epoch: int
    follow: bool = False
    tail_bytes: int = 0
    window_bytes: int = 0
    """The site's first credit on the stream (bytes of output it may send before a LogCreditCommand)."""


@dataclass(frozen=True)
class LogCancelCommand:
    stream_id: int


@dataclass(frozen=True)
class LogCreditCommand:
    """Let the site send `bytes` more bytes of output on log stream `stream_id` (its reader consumed them)."""

    stream_id: int
    bytes: int


@dataclass(frozen=True)
class ReserveCommand:
    """Phase one of a gang part: hold `cards` cards of a class for `timeout`, awaiting Commit or Abort; the
    Launch of `epoch` consumes the hold. (Advance bookings are `BookCommand`s.)"""

    reservation_id: str
    job_id: str
    accelerator_class: str
    cards: int
    timeout: timedelta
    tenant: str = ""
    project: str = ""
    run: StackRun | None = None
    epoch: int = 0
    nodes: int = 0
    """The part's nodes (0: one), so the site holds whole nodes for it."""


@dataclass(frozen=True)
class CommitCommand:
    reservation_id: str


@dataclass(frozen=True)
class AbortCommand:
    reservation_id: str
    reason: str = ""


Command = (
    LaunchCommand
    | CancelCommand
    | PreemptCommand
    | DrainCommand
    | LogRequestCommand
    | LogCancelCommand
    | LogCreditCommand
    | ReserveCommand
    | CommitCommand
    | AbortCommand
    | BookCommand
    | ReleaseCommand
)


@dataclass(frozen=True)
class StreamClosed:
    """Ends the stream that reads it with a status that says why (UNAVAILABLE and `reason`): the site is past its
    lease, the gateway is stopping, or another stream of the same site took over. The agent re-dials."""

    reason: str
    message: str


# None on an outbox closes the stream that reads it quietly; a StreamClosed ends it with a status and a reason
# (a replaced connection is told SITE_STREAM_TAKEN_OVER).
Outbox = asyncio.Queue[tuple[int, Command] | StreamClosed | None]

_connection_ids = itertools.count(1)

STREAM_TAKEN_OVER = ReasonCode.SITE_STREAM_TAKEN_OVER
"""Closing reason sent to a site's stream when another stream of the same site replaced it."""


def _taken_over(site: str) -> str:
    return (
        f"another agent connected as site {site!r} and took over its stream (last one wins); only one agent per"
        " site may be connected: stop the other one, or give each agent its own site and certificate"
    )


LIVE, SUSPECT, LOST = "live", "suspect", "lost"
"""A site's liveness as the gateway judges it: heard from within its heartbeats, silent for a few of them,
silent past its lease (its attempts were declared LOST)."""
SEQUENCE_BLOCK = 1024
"""Message sequence numbers reserved in the store at a time (one durable write per block, not per message)."""
MAX_UNACKED = 4096
"""Unacknowledged commands kept per site (the oldest go first): an agent that never acks cannot grow memory."""
RESENT_UNTIL_ACKED = (CancelCommand, PreemptCommand)
"""Commands kept until the site acknowledges them and sent again on its next stream. The rest are re-derived
on reconnect from durable state (launches, drain, bookings) or are void once a stream ends (gang phases)."""


@dataclass
class SiteRecord:
    name: str
    connected: bool = False
    draining: bool = False
    pools: dict[str, Pool] = field(default_factory=dict)
    agent_version: str = ""
    last_seen: datetime | None = None
    outbox: Outbox | None = None
    terms: SiteTerms | None = None
    connection_id: int = 0
    next_sequence: int = 1
    heard_at: float | None = None
    """When the gateway last heard from the site, on its monotonic clock (None: not since it started)."""
    liveness: str = LIVE
    liveness_reason: str = ""
    rendezvous: RendezvousPoint | None = None
    """Where rank 0 of a cross-site gang mastered here is reached (the agent's Hello); None: not offered."""

    sequence_limit: int = 1
    """Exclusive end of the block of sequence numbers reserved for this site."""
    unacked: dict[int, Command] = field(default_factory=dict)
    """Commands of `RESENT_UNTIL_ACKED` sent and not yet acknowledged, by sequence."""
    acked: int = 0
    """Highest message sequence the site acknowledged (in this process)."""
    connects: int = 0
    """Streams the site's agent opened since this process started (its first and every reconnect): metrics."""


class SiteRegistry:
    def __init__(
        self,
        reserve_sequences: Callable[[str, int], int] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`reserve_sequences(site, count)` returns the first of `count` fresh message sequence numbers for the
        site (`Store.reserve_site_messages`); None numbers in memory from 1 (tests of one process only).
        `monotonic` is the clock liveness is judged by."""
        self._sites: dict[str, SiteRecord] = {}
        self._reserve = reserve_sequences or _counting()
        self.monotonic = monotonic

    def _heard(self, record: SiteRecord, now: datetime) -> None:
        record.last_seen = now
        record.heard_at = self.monotonic()
        if record.liveness != LIVE:
            record.liveness, record.liveness_reason = LIVE, ""

    def cards_per_node(self, site: str, accelerator_class: str) -> int:
        """The node shape of the site's pool of the class as last reported (0: not said, or no such pool)."""
        record = self._sites.get(site)
        pool = record.pools.get(accelerator_class) if record is not None else None
        return pool.cards_per_node if pool is not None else 0

    def rendezvous_point(self, site: str) -> RendezvousPoint | None:
        """The site's rendezvous point as its agent last said in Hello (None: none, or never connected)."""
        record = self._sites.get(site)
        return record.rendezvous if record is not None else None

    def get(self, site: str) -> SiteRecord:
        record = self._sites.get(site)
        if record is None:
            raise NotFound(f"site {site!r} has never connected", reason="SITE_NOT_FOUND")
        return record

    def connect(self, site: str, agent_version: str, now: datetime, resume_cursor: int = 0) -> tuple[int, Outbox]:
        """Register a new stream for `site`; a previous stream of the same site is closed (last one wins).
        `resume_cursor` is the highest message sequence the agent says it processed (Hello.resume_cursor):
        unacknowledged Cancels and Preempts above it are queued again, under new sequence numbers."""
        record = self._sites.setdefault(site, SiteRecord(site))
        if record.outbox is not None:  # the displaced agent is told why, so that it backs off instead of fighting
            record.outbox.put_nowait(StreamClosed(STREAM_TAKEN_OVER, _taken_over(site)))
        record.outbox = asyncio.Queue()
        record.connection_id = next(_connection_ids)
        record.connected = True
        record.connects += 1
        record.agent_version = agent_version
        self._heard(record, now)
        record.pools = {}
        if record.draining:
            self._enqueue(record, DrainCommand(True))
        self._acknowledge(record, resume_cursor)
        again, record.unacked = list(record.unacked.values()), {}
        for command in again:
            self._enqueue(record, command)
        return record.connection_id, record.outbox

    def acknowledge(self, site: str, sequence: int) -> None:
        """The site processed every message up to `sequence` (its Ack): nothing up to it is sent again."""
        record = self._sites.get(site)
        if record is not None:
            self._acknowledge(record, sequence)

    def _acknowledge(self, record: SiteRecord, sequence: int) -> None:
        record.acked = max(record.acked, sequence)
        for done in [s for s in record.unacked if s <= sequence]:
            del record.unacked[done]

    def disconnect(self, site: str, connection_id: int) -> None:
        record = self._sites.get(site)
        if record is not None and record.connection_id == connection_id:
            record.connected = False
            record.outbox = None

    def is_current(self, site: str, connection_id: int) -> bool:
        record = self._sites.get(site)
        return record is not None and record.connection_id == connection_id

    def report(
        self, site: str, pools: Iterable[Pool], full: bool, now: datetime, terms: SiteTerms | None = None
    ) -> None:
        record = self.get(site)
        if terms is not None:
            record.terms = terms
        if full:
            record.pools = {}
        for pool in pools:
            record.pools[pool.accelerator_class] = pool
        self._heard(record, now)

    def lower_free(self, site: str, accelerator_class: str, free: int) -> bool:
        """Take a site's later word that only `free` cards of a class are free (a refused Reserve says so) until
        its next capacity report. Only ever lowers: a reply cannot raise free above the site's last report, so
        a site cannot talk itself into more work this way. True when the view changed."""
        record = self._sites.get(site)
        pool = record.pools.get(accelerator_class) if record is not None else None
        if record is None or pool is None or free >= pool.free:
            return False
        record.pools[accelerator_class] = replace(pool, free=max(0, free))
        return True

    def touch(self, site: str, now: datetime) -> None:
        self._heard(self.get(site), now)

    def heard_at(self, site: str) -> float | None:
        record = self._sites.get(site)
        return record.heard_at if record is not None else None

    def liveness(self, site: str) -> str:
        record = self._sites.get(site)
        return record.liveness if record is not None else LIVE

    def suspect(self, site: str, reason: str) -> None:
        record = self._sites.get(site)
        if record is not None and record.liveness == LIVE:
            record.liveness, record.liveness_reason = SUSPECT, reason

    def mark_lost(self, site: str, reason: str) -> None:
        """The site is past its lease: shown as lost, its stream (if one is still open) closed, its pools no
        longer offered. It becomes live again when it is next heard from (a new stream's Hello)."""
        record = self._sites.setdefault(site, SiteRecord(site))
        record.liveness, record.liveness_reason = LOST, reason
        if record.outbox is not None:
            record.outbox.put_nowait(
                StreamClosed("SITE_LEASE_EXPIRED", f"the gateway declared this site lost: {reason}")
            )
        record.outbox = None
        record.connected = False
        record.pools = {}

    def close_all(self, message: str) -> None:
        """End every open stream with GATEWAY_SHUTTING_DOWN and `message` (the gateway is stopping)."""
        for record in self._sites.values():
            if record.outbox is not None:
                record.outbox.put_nowait(StreamClosed("GATEWAY_SHUTTING_DOWN", message))

    async def wait_closed(self, within: float) -> bool:
        """Wait (at most `within` s) until no site stream is open; True when all ended. After `close_all`, this
        lets each stream send its closing status before the server stops, so that an agent reads the reason
        instead of a connection cut mid-stream."""
        deadline = time.monotonic() + within
        while any(record.outbox is not None for record in self._sites.values()):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def send(self, site: str, command: Command) -> bool:
        """Queue a command for the site's stream; False when the site is not connected."""
        record = self._sites.get(site)
        if record is None or record.outbox is None:
            return False
        self._enqueue(record, command)
        return True

    def _enqueue(self, record: SiteRecord, command: Command) -> None:
        assert record.outbox is not None
        if isinstance(command, LogRequestCommand | LogCancelCommand | LogCreditCommand):
            record.outbox.put_nowait((0, command))  # best effort: not part of the resume sequence
            return
        if record.next_sequence >= record.sequence_limit:
            record.next_sequence = self._reserve(record.name, SEQUENCE_BLOCK)
            record.sequence_limit = record.next_sequence + SEQUENCE_BLOCK
        sequence = record.next_sequence
        record.next_sequence += 1
        if isinstance(command, RESENT_UNTIL_ACKED):
            record.unacked[sequence] = command
            if len(record.unacked) > MAX_UNACKED:
                del record.unacked[min(record.unacked)]
        record.outbox.put_nowait((sequence, command))

    def set_draining(self, site: str, draining: bool) -> SiteRecord:
        record = self._sites.setdefault(site, SiteRecord(site))
        record.draining = draining
        if record.outbox is not None:
            self._enqueue(record, DrainCommand(draining))
        return record

    def views(self, leases: dict[str, dict[str, int]]) -> list[SiteView]:
        """Snapshot for placement; `leases` maps site -> class -> cards this gateway has leased there."""
        return [self.view(record.name, leases.get(record.name, {})) for record in self._sites.values()]

    def offered(self) -> dict[str, int]:
        """Cards offered per class by the sites that may take work now: `offered_by(views)` without building
        every site's view."""
        offered: dict[str, int] = defaultdict(int)
        for record in self._sites.values():
            if record.connected and not record.draining:
                for pool in record.pools.values():
                    offered[pool.accelerator_class] += pool.offered
        return offered

    def view(self, site: str, leased: dict[str, int] | None = None) -> SiteView:
        record = self.get(site)
        return SiteView(
            name=record.name,
            connected=record.connected,
            draining=record.draining,
            pools=tuple(sorted(record.pools.values(), key=lambda p: p.accelerator_class)),
            leased=tuple(sorted((leased or {}).items())),
            agent_version=record.agent_version,
            last_seen=record.last_seen,
            terms=record.terms,
            liveness=record.liveness,
            liveness_reason=record.liveness_reason,
        )

    def names(self) -> list[str]:
        return sorted(self._sites)


def _counting() -> Callable[[str, int], int]:
    """An in-memory `reserve_sequences`: each site's numbers from 1, lost with the process."""
    marks: dict[str, int] = {}

    def reserve(site: str, count: int) -> int:
        first = marks.get(site, 0) + 1
        marks[site] = first + count - 1
        return first

    return reserve
