"""The scheduler's queue: which jobs wait, what each may use, and whether the next cycle must look at them all.

Owns: the queued job ids with the accelerator classes the policy in force admits each to (worked out once per
job, again on a policy change), the ones queued since the last cycle (`fresh`), the flag that capacity may have
grown since the last full pass, and the wake-up event the scheduler loop waits on. It follows the job book as
one of its listeners (`job_changed`) and never changes a job. It does not order the queue (fair share is
`gateway.placement.fairshare`, applied by `gateway.scheduler.cycle`).

Skipping the jobs that waited is exact only while nothing they were judged on changed. Events (freed or
reported cards, a drain lifted, a booking window, a policy reload, a held job leaving the queue) set the flag.
Time is the other input: rule windows (`hours`, `days`) and quota periods turn on whole minutes, so the first
cycle of every minute is a full pass. Aging steps only reorder jobs (a job that fits nowhere still fits nowhere);
what else time changes (a preempted job's grace running out, a dispatched job's latest end moving a
reservation's start) is then picked up within a minute.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime

from gateway.jobs.model import Job, JobSpec, JobState

ClassesFor = Callable[[JobSpec], tuple[str, ...]]
"""The classes the policy in force lets a job use (accelerator access and class rules)."""


class JobQueue:
    def __init__(self, classes_for: ClassesFor) -> None:
        self._classes_for = classes_for
        self._queued: dict[str, tuple[str, ...]] = {}
        self._fresh: list[str] = []
        self._capacity_grew = True
        self._full_pass_minute: datetime | None = None  # the minute of the last full pass
        self.wakeup = asyncio.Event()
        """Set when there may be something to place: a new job, freed cards, new capacity."""

    @property
    def queued(self) -> Mapping[str, tuple[str, ...]]:
        """Queued job id -> the classes it may use (read only)."""
        return self._queued

    def classes(self, job_id: str) -> tuple[str, ...] | None:
        return self._queued.get(job_id)

    def job_changed(self, job: Job) -> None:
        """The job book's listener: a job queued (again) is fresh; one that left the queue is dropped."""
        if job.state == JobState.QUEUED:
            if job.job_id not in self._queued:
                self._queued[job.job_id] = self._classes_for(job.spec)
                self._fresh.append(job.job_id)
                self.wakeup.set()
        else:
            self._queued.pop(job.job_id, None)

    def policy_changed(self, active: Mapping[str, Job]) -> None:
        """A new policy is in force: what each queued job may use is worked out again, every job looked at."""
        for job_id in self._queued:
            self._queued[job_id] = self._classes_for(active[job_id].spec)
        self.capacity_changed()

    def capacity_changed(self) -> None:
        """Something may have freed or added cards (a report, an end, a resumed site): look at every job."""
        self._capacity_grew = True
        self.wakeup.set()

    def candidates(self, now: datetime, lapsed: bool = False) -> list[str]:
        """The queued jobs a cycle at `now` looks at: all of them when capacity may have grown (or `lapsed`: a job
        that held cards left the queue, so what it held is free for all) or `now` is in a minute no full pass
        has seen (time windows and quota periods may have turned), else only the new ones."""
        minute = now.replace(second=0, microsecond=0)
        if lapsed or minute != self._full_pass_minute:
            self._capacity_grew = True
        if self._capacity_grew:
            self._full_pass_minute = minute
            candidates = list(self._queued)
        else:
            # Nothing freed since the last full pass: jobs that did not fit then still do not; only new ones.
            candidates = [job_id for job_id in self._fresh if job_id in self._queued]
        self._capacity_grew, self._fresh = False, []
        return candidates

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
