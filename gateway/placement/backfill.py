"""Backfill: an earmark for the job at the head of the queue, so that smaller jobs fill the gaps around it
without starving it (DESIGN: "big jobs hold a reservation so that backfill cannot starve them"; here that is an
earmark, since "reservation" means an advance booking).

Owns: the pure arithmetic of one pool (a site's cards of one class) over time: when a blocked job could start
there at the earliest, given the cards free now and the latest end of every attempt holding cards there (its
start plus its max runtime; an attempt without a max runtime is taken to run for ever); the `Earmark` that keeps
those cards for it from then on; how many of a held pool's cards another job may still take (all the free ones
if it is certain to end before the hold starts, else only the spare ones the hold leaves over); and the view of
a site that every other job places against. Which jobs hold earmarks and how the cycle uses them is
`gateway.scheduler.cycleplan`'s. No I/O; the clock is passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from gateway.sites.model import SiteView

END_SLACK = timedelta(seconds=60)
"""Added to every latest end: the dispatch latency before an attempt starts, and the stop grace its agent gives
it at its max runtime. An earmark starts this much later than the arithmetic alone says; a backfilled job
must end this much earlier."""


@dataclass(frozen=True)
class Release:
    """`cards` cards of a pool that an attempt gives back by `end` at the latest (None: not known to end)."""

    end: datetime | None
    cards: int


def latest_end(start: datetime | None, max_runtime: timedelta, now: datetime) -> datetime | None:
    """When an attempt will have given its cards back at the latest. `start` None: it starts now (dispatched
    this cycle, or not yet reported running). None when it has no max runtime: it may run for ever."""
    if max_runtime <= timedelta(0):
        return None
    return (start or now) + max_runtime + END_SLACK


def earliest_start(
    cards: int, free_now: int, releases: Iterable[Release], now: datetime
) -> tuple[datetime, int] | None:
    """The earliest instant `cards` cards are free on a pool, and how many more are free then (the spare).

    Only releases free cards after now (nothing else is known to), so from that instant on the pool never has
    fewer free: the spare is what a job still running then may take without delaying the one that waits. Every
    release at that instant counts (the spare does not depend on the order of releases that end together).
    None when even every release with a known end would not free enough.
    """
    return earliest_start_in_order(cards, free_now, sorted((r for r in releases if r.end is not None), key=_end), now)


def earliest_start_in_order(
    cards: int, free_now: int, releases: Iterable[Release], now: datetime
) -> tuple[datetime, int] | None:
    """`earliest_start` over releases already in end order, every one with a known end (`Releases.at`)."""
    free = free_now
    if free >= cards:
        return now, free - cards
    reached: datetime | None = None
    for release in releases:
        if reached is not None and release.end != reached:
            break
        free += release.cards
        if reached is None and free >= cards:
            reached = release.end
    if reached is None:
        return None
    return max(now, reached), free - cards


def _end(release: Release) -> datetime:
    assert release.end is not None
    return release.end


class EarmarkKind(enum.StrEnum):
    BACKFILL = "backfill"  # the head of a class's queue, from when it could start: backfill fills around it
    PREEMPTION = "preemption"  # the cards that preempted jobs are giving back, kept for the job they stop for


@dataclass
class Earmark:
    """Cards of one pool kept for one queued job from `start` on. Mutable within a cycle: `spare` shrinks as
    other jobs that will still be running at `start` are placed on the pool."""

    job_id: str
    site: str
    accelerator_class: str
    cards: int
    start: datetime
    spare: int
    kind: EarmarkKind

    def ends_before(self, end: datetime | None) -> bool:
        """A job ending by `end` is gone before the hold starts (never so for preemption: its cards are due now)."""
        return self.kind is EarmarkKind.BACKFILL and end is not None and end <= self.start

    def room_for(self, free_now: int, end: datetime | None) -> int:
        """Cards of the pool a job ending by `end` may take now without delaying the holder."""
        return free_now if self.ends_before(end) else max(0, min(free_now, self.spare))

    def take(self, cards: int, end: datetime | None) -> None:
        """Another job was placed on the pool: unless it ends before the hold starts, it uses spare cards."""
        if not self.ends_before(end):
            self.spare -= cards


def earmarked_view(view: SiteView, holds: Iterable[Earmark]) -> SiteView:
    """The site as a job still running when its holds start sees it: each held pool free only to its spare.
    (A pool's `free` is cut, so `free_cards` and everything placement does with it follow.)"""
    by_class = {hold.accelerator_class: hold for hold in holds}
    if not by_class:
        return view
    pools = tuple(
        replace(pool, free=hold.room_for(view.free_cards(pool), None))
        if (hold := by_class.get(pool.accelerator_class)) is not None
        else pool
        for pool in view.pools
    )
    return replace(view, pools=pools)
