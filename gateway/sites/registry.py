"""The site registry: which agents are connected, what they offer, and the outbound queue to each.

Owns: per-site liveness (when the gateway last heard from each site, on its own monotonic clock, and the
site's state: live, suspect, lost; `gateway.sites.liveness` judges it), pools (full reports and deltas),
drain state, and the gateway->agent command sequence. It does not decide placement and does not know gRPC:
commands are plain dataclasses that the transport layer turns into messages.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

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


@dataclass(frozen=True)
class LogCancelCommand:
    stream_id: int


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
    | ReserveCommand
    | CommitCommand
    | AbortCommand
    | BookCommand
    | ReleaseCommand
)


@dataclass(frozen=True)
class StreamClosed:
    """Ends the stream that reads it with a status that says why (UNAVAILABLE and `reason`): the site is past its
    lease, or the gateway is stopping. The agent re-dials."""

    reason: str
    message: str


# None on an outbox closes the stream that reads it (the connection was replaced); a StreamClosed ends it with
# a status and a reason.
Outbox = asyncio.Queue[tuple[int, Command] | StreamClosed | None]

_connection_ids = itertools.count(1)

LIVE, SUSPECT, LOST = "live", "suspect", "lost"
"""A site's liveness as the gateway judges it: heard from within its heartbeats, silent for a few of them,
silent past its lease (its attempts were declared LOST)."""


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


class SiteRegistry:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._sites: dict[str, SiteRecord] = {}
        self.monotonic = monotonic

    def _heard(self, record: SiteRecord, now: datetime) -> None:
        record.last_seen = now
        record.heard_at = self.monotonic()
        if record.liveness != LIVE:
            record.liveness, record.liveness_reason = LIVE, ""

    def get(self, site: str) -> SiteRecord:
        record = self._sites.get(site)
        if record is None:
            raise NotFound(f"site {site!r} has never connected", reason="SITE_NOT_FOUND")
        return record

    def connect(self, site: str, agent_version: str, now: datetime) -> tuple[int, Outbox]:
        """Register a new stream for `site`; a previous stream of the same site is closed (last one wins)."""
        record = self._sites.setdefault(site, SiteRecord(site))
        if record.outbox is not None:
            record.outbox.put_nowait(None)
        record.outbox = asyncio.Queue()
        record.connection_id = next(_connection_ids)
        record.connected = True
        record.agent_version = agent_version
        self._heard(record, now)
        record.pools = {}
        if record.draining:
            self._enqueue(record, DrainCommand(True))
        return record.connection_id, record.outbox

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
        if isinstance(command, LogRequestCommand | LogCancelCommand):
            record.outbox.put_nowait((0, command))  # best effort: not part of the resume sequence
            return
        record.outbox.put_nowait((record.next_sequence, command))
        record.next_sequence += 1

    def set_draining(self, site: str, draining: bool) -> SiteRecord:
        record = self._sites.setdefault(site, SiteRecord(site))
        record.draining = draining
        if record.outbox is not None:
            self._enqueue(record, DrainCommand(draining))
        return record

    def views(self, leases: dict[str, dict[str, int]]) -> list[SiteView]:
        """Snapshot for placement; `leases` maps site -> class -> cards this gateway has leased there."""
        return [self.view(record.name, leases.get(record.name, {})) for record in self._sites.values()]

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
