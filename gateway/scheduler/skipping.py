"""Which jobs that already waited a cycle over new jobs must still look at, and when it must look at all of them.

Owns: what the scheduler remembers between cycles so that skipping the jobs that waited stays exact (the order
of the waiting jobs' scopes, the next aging step, the count of preemptible jobs holding cards), and the test,
per group of waiting jobs alike (`gateway.scheduler.queue.Need`), whether the cards free now could start one.

Why skipping is exact. A job that waited was looked at by an earlier cycle and did not start. Since then cards
were only taken: whatever frees or adds cards, changes the policy or a booking, lets a hold or a gang's site
backoff lapse, or a new minute (rule windows, quota periods) makes the queue hand over every job. So a cycle
may skip a job that waited when
1. the cards free now, before this cycle's backfill and preemption holds are cut, could not start it: no pool of
   its classes has that many free (for a gang that may span sites: not that many in all), and no booking makes it
   see the sites differently;
2. it could not preempt anyone new: no preemptible job began holding cards, or changed, since the last cycle;
3. it stands where it stood among the other waiting jobs, so that each class's head (the first job that fits
   nowhere, which holds a reservation) is the same job: the scopes (tenant, project, priority class) compare by
   fair share as they did, and no job has taken an aging step while jobs of several scopes wait (within a scope
   the older job stays ahead as both age: job ids sort by creation time, `gateway.jobs.service.new_job_id`).
A job failing 1 is looked at, in queue order with the new ones; failing 2 or 3 makes the cycle a full pass.
One thing only shows during the cycle: a class's head of the last cycle (looked at again every cycle) may start,
preempt or find nothing to reserve, and then the class's next waiting job in queue order may become its head. So
when the cycle passes the old head and its class has none, the waiting jobs of that class still ahead in queue
order are taken in (`QueueOrder.take_in`), as a full pass would look at them.
What time alone changes inside a minute (a preempted job's grace running out, a dispatched job's latest end
moving a reservation's start) waits for the next minute's full pass. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime

from gateway.jobs.model import Job
from gateway.placement.fairshare import next_aging_step
from gateway.placement.freeindex import FreeIndex
from gateway.scheduler.queue import Need

Scope = tuple[str, str, str]  # (tenant, project, priority class)
ScopeParts = Mapping[Scope, tuple[int, float, float]]  # its base priority, owner's and project's shares
NEVER = datetime.max.replace(tzinfo=UTC)  # the next aging step when every waiting job has aged all it may
Key = tuple[int, float, float, str]  # `gateway.placement.fairshare.queue_key`


class QueueOrder:
    """A cycle's jobs in queue order (by `queue_key`), that can take in more jobs mid-way: those still ahead
    are looked at in their place. `passed` is called with each job once the cycle is done with it."""

    def __init__(self, keys: list[Key], passed: Callable[[str], None] = lambda _: None) -> None:
        self._keys = sorted(keys)
        self._at = 0
        self._passed = passed

    def __iter__(self) -> Iterator[str]:
        while self._at < len(self._keys):
            job_id = self._keys[self._at][-1]
            self._at += 1
            yield job_id
            self._passed(job_id)

    def take_in(self, keys: Iterable[Key]) -> None:
        """Jobs to look at too, those not passed yet (a key after the current job's), in their place."""
        current = self._keys[self._at - 1] if self._at else None
        later = [key for key in keys if current is None or key > current]
        if later:
            self._keys[self._at :] = sorted([*self._keys[self._at :], *later])


class Skipping:
    def __init__(self) -> None:
        self._parts: dict[Scope, tuple[int, float, float]] = {}  # the last cycle's
        self._next_aging: datetime | None = None  # None: not known (due)
        self._preemptible: int | None = None
        self._settled = False

    def must_look_at_all(self, now: datetime, parts: ScopeParts, preemptible: int) -> bool:
        """Whether a cycle at `now` must look at every waiting job (2 or 3 above): `parts` of the scopes that
        have waiting jobs, `preemptible` the count of changes to preemptible jobs holding cards."""
        if preemptible != self._preemptible:
            return True
        if len(parts) > 1 and (self._next_aging is None or now >= self._next_aging):
            return True
        kept = [scope for scope in self._parts if scope in parts]  # a new scope's jobs are all new: looked at
        return _ranks(parts, kept) != _ranks(self._parts, kept)

    def may_rest(self, preemptible: int) -> bool:
        """Whether a cycle with no new job to look at (and no full pass due) may do nothing: the last one
        changed nothing and no preemptible job began holding cards since."""
        return self._settled and preemptible == self._preemptible

    def remember(
        self, now: datetime, parts: ScopeParts, looked_at: Iterable[Job], full: bool, preemptible: int
    ) -> None:
        """After a cycle chose its jobs: the scopes' order, and the next aging step of the jobs it looked at (all
        waiting jobs on a full pass; a skipped job's next step is never later than it was). With one scope
        waiting, aging cannot reorder anyone: the step is left unknown, which makes the cycle after a second
        scope appears a full pass."""
        self._parts = dict(parts)
        self._preemptible = preemptible
        if len(parts) <= 1:
            self._next_aging = None
            return
        earliest = min((step for job in looked_at if (step := next_aging_step(job, now)) is not None), default=NEVER)
        self._next_aging = earliest if full or self._next_aging is None else min(self._next_aging, earliest)

    def settled(self, changed_nothing: bool) -> None:
        """The cycle's outcome: `changed_nothing` when it dispatched, started and preempted nothing."""
        self._settled = changed_nothing

    @staticmethod
    def could_start(need: Need, index: FreeIndex) -> bool:
        """Whether the cards free now (before this cycle's holds) could start a job of `need` (1 above; a
        booking that concerns the job is the caller's to check)."""
        if need.spans_sites and sum(index.total(cls) for cls in need.classes) >= need.cards:
            return True
        return index.fits_somewhere(need.classes, need.cards)


def _ranks(parts: ScopeParts, scopes: list[Scope]) -> dict[Scope, int]:
    """Each scope's rank by fair share among `scopes` (equal shares, equal rank): two scopes' jobs compare as
    their ranks do whenever their aged priorities are equal."""
    distinct = sorted({parts[scope][1:] for scope in scopes})
    return {scope: distinct.index(parts[scope][1:]) for scope in scopes}
