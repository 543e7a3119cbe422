"""The scheduler's queue: which jobs wait, what each may use, and whether the next cycle must look at them all.

Owns: the queued job ids with the accelerator classes the policy in force admits each to (worked out once per
job, again on a policy change), the ones queued since the last cycle (`fresh`), the flag that capacity may have
grown since the last full pass, and the wake-up event the scheduler loop waits on. It follows the job book as
one of its listeners (`job_changed`) and never changes a job. It does not order the queue (fair share is
`gateway.placement.fairshare`, applied by `gateway.scheduler.cycle`).

Skipping the jobs that waited is exact only while nothing they were judged on changed. Events (freed or
reported cards, a drain lifted, a booking window, a policy reload, a held job leaving the queue) set the flag.
Time is the other input: rule windows (`hours`, `days`) and quota periods turn on whole minutes, so the first
cycle of every minute is a full pass. What else may change between two such cycles (the queue's order, a head's
hold, new victims) is `gateway.scheduler.skipping`'s business; it reads the waiting jobs grouped by `Need`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import NamedTuple

from gateway.jobs.model import Job, JobSpec, JobState

ClassesFor = Callable[[JobSpec], tuple[str, ...]]
"""The classes the policy in force lets a job use (accelerator access and class rules)."""


class Need(NamedTuple):
    """What of a waiting job decides whether it could start on the cards free now, and where it stands in the
    queue: jobs of one need are alike for `gateway.scheduler.skipping`."""

    classes: tuple[str, ...]
    cards: int
    spans_sites: bool  # a gang that may span sites: its cards may come from several
    tenant: str
    project: str
    priority_class: str
    reservation: str


def need_of(spec: JobSpec, classes: tuple[str, ...]) -> Need:
    return Need(
        classes,
        spec.resources.cards,
        spec.topology.max_sites > 1,
        spec.tenant,
        spec.project,
        spec.priority_class,
        spec.reservation,
    )


class JobQueue:
    def __init__(self, classes_for: ClassesFor) -> None:
        self._classes_for = classes_for
        self._queued: dict[str, tuple[str, ...]] = {}
        self._needs: dict[str, Need] = {}
        self._by_need: dict[Need, dict[str, None]] = {}  # need -> its queued job ids, in queueing order
        self._fresh: list[str] = []
        self._capacity_grew = True
        self._full_pass_minute: datetime | None = None  # the minute of the last full pass
        self.wakeup = asyncio.Event()
        """Set when there may be something to place: a new job, freed cards, new capacity."""

    @property
    def queued(self) -> Mapping[str, tuple[str, ...]]:
        """Queued job id -> the classes it may use (read only)."""
        return self._queued

    @property
    def by_need(self) -> Mapping[Need, Mapping[str, None]]:
        """The queued jobs grouped by need (read only)."""
        return self._by_need

    def classes(self, job_id: str) -> tuple[str, ...] | None:
        return self._queued.get(job_id)

    def job_changed(self, job: Job) -> None:
        """The job book's listener: a job queued (again) is fresh; one that left the queue is dropped."""
        if job.state == JobState.QUEUED:
            if job.job_id not in self._queued:
                self._enter(job)
                self._fresh.append(job.job_id)
                self.wakeup.set()
        elif self._queued.pop(job.job_id, None) is not None:
            self._leave(job.job_id)

    def _enter(self, job: Job) -> None:
        classes = self._queued[job.job_id] = self._classes_for(job.spec)
        need = self._needs[job.job_id] = need_of(job.spec, classes)
        self._by_need.setdefault(need, {})[job.job_id] = None

    def _leave(self, job_id: str) -> None:
        need = self._needs.pop(job_id)
        group = self._by_need[need]
        del group[job_id]
        if not group:
            del self._by_need[need]

    def policy_changed(self, active: Mapping[str, Job]) -> None:
        """A new policy is in force: what each queued job may use is worked out again, every job looked at."""
        for job_id in list(self._queued):
            self._leave(job_id)
            self._enter(active[job_id])
        self.capacity_changed()

    def capacity_changed(self) -> None:
        """Something may have freed or added cards (a report, an end, a resumed site): look at every job."""
        self._capacity_grew = True
        self.wakeup.set()

    def candidates(self, now: datetime, lapsed: bool = False) -> tuple[list[str], bool]:
        """The queued jobs a cycle at `now` looks at, and whether that is all of them (a full pass): all when
        capacity may have grown (or `lapsed`: a job that held cards left the queue, so what it held is free for
        all) or `now` is in a minute no full pass has seen (time windows and quota periods may have turned),
        else only the new ones."""
        minute = now.replace(second=0, microsecond=0)
        if lapsed or minute != self._full_pass_minute:
            self._capacity_grew = True
        if self._capacity_grew:
            self._full_pass_minute = minute
            candidates = list(self._queued)
        else:
            # Nothing freed since the last full pass: jobs that did not fit then still do not; only new ones.
            candidates = [job_id for job_id in self._fresh if job_id in self._queued]
        full, self._capacity_grew, self._fresh = self._capacity_grew, False, []
        return candidates, full

    async def wait(self, period: float) -> None:
        """Return on a wake-up, or after `period` s; a period with no wake-up makes the next cycle a full pass
        (a safety net for anything missed)."""
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancel that lands as the event
            # fires, and the cancelled scheduler then runs on for ever (a gateway that never stops).
            async with asyncio.timeout(period):
                await self.wakeup.wait()
        except TimeoutError:
            self._capacity_grew = True
        self.wakeup.clear()
