"""When the cards held at each pool come back at the latest: kept as jobs change, so that a cycle that needs a
reservation does not first walk every job holding cards.

Owns: `Releases`, per pool (site, class), the attempts holding cards there and the latest end of each
(`gateway.placement.backfill.latest_end`), in end order. An attempt known to be running has a fixed end (its
start plus its max runtime); one not yet reported running starts "now", so its end moves with the clock and
is kept as its max runtime alone, resolved against the cycle's `now` when read; one with no max runtime has no
known end and is not kept (it frees nothing anyone can count on). Updated by live usage when a job starts or
stops holding cards, in the same step as the other tallies. Plain bookkeeping: no I/O, the clock passed in.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gateway.jobs.model import Job, JobState
from gateway.placement.backfill import END_SLACK, Release

Pool = tuple[str, str]  # (site, class)


_Fixed = tuple[datetime, int, str]  # (latest end, cards, job)
_Moving = tuple[timedelta, int, str]  # (max runtime + slack, cards, job): the end is `now` plus this


@dataclass
class _PoolReleases:
    fixed: list[_Fixed] = field(default_factory=list)  # sorted
    moving: list[_Moving] = field(default_factory=list)  # sorted

    def __bool__(self) -> bool:
        return bool(self.fixed or self.moving)


class Releases:
    """The latest releases of the cards held at each pool, in end order."""

    def __init__(self) -> None:
        self._pools: dict[Pool, _PoolReleases] = {}
        self._entries: dict[str, list[tuple[Pool, _Fixed | _Moving]]] = {}  # job -> what it added where

    def hold(self, job: Job) -> None:
        """`job` holds cards (new, or changed while holding: its previous entries are replaced)."""
        self.release(job.job_id)
        runtime = job.spec.max_runtime
        if runtime <= timedelta(0):
            return  # may run for ever: no known end
        running = job.state == JobState.RUNNING and job.start_time is not None
        entries: list[tuple[Pool, _Fixed | _Moving]] = []
        for p in job.placements:
            key = (p.site, p.accelerator_class)
            pool = self._pools.setdefault(key, _PoolReleases())
            if running:
                assert job.start_time is not None
                fixed = (job.start_time + runtime + END_SLACK, p.cards, job.job_id)
                insort(pool.fixed, fixed)
                entries.append((key, fixed))
            else:
                moving = (runtime + END_SLACK, p.cards, job.job_id)
                insort(pool.moving, moving)
                entries.append((key, moving))
        if entries:
            self._entries[job.job_id] = entries

    def release(self, job_id: str) -> None:
        """The job stopped holding cards (or is about to be held again in a new version)."""
        for key, entry in self._entries.pop(job_id, ()):
            pool = self._pools[key]
            if isinstance(entry[0], datetime):
                del pool.fixed[bisect_left(pool.fixed, entry)]
            else:
                del pool.moving[bisect_left(pool.moving, entry)]
            if not pool:
                del self._pools[key]

    def at(self, site: str, cls: str, now: datetime) -> Iterator[Release]:
        """The pool's releases in end order, the moving ones resolved against `now`."""
        pool = self._pools.get((site, cls))
        if pool is None:
            return iter(())
        fixed = (Release(end, cards) for end, cards, _ in pool.fixed)
        moving = (Release(now + after, cards) for after, cards, _ in pool.moving)
        if not pool.moving:
            return fixed
        if not pool.fixed:
            return moving
        return heapq.merge(fixed, moving, key=_end)


def _end(release: Release) -> datetime:
    assert release.end is not None
    return release.end
