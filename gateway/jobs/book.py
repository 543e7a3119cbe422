"""The job book: the gateway's in-memory view of its active jobs over the durable store, and its one writer.

Owns: the active jobs (every job not yet terminal), every job state change (`transition`, `transitions`: durable,
with the usage receipts they settle, in one transaction, before anyone hears of them; `requeue` after a lost or
preempted attempt), and telling its listeners. Two kinds, registered once by the composition root: the state
listeners that keep their own views in step (the scheduler's queue, live usage), each told of every job the book
remembers, in order; and the event bus that job watchers read. Nothing else writes a job's state.
It does not decide whether a change is legal (its callers check that first), nor speak to sites or gRPC.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from fedgate.common.reasons import ReasonCode
from gateway.jobs.events import EventBus
from gateway.jobs.model import ATTEMPT_ENDS, Job, JobEvent, JobState, Reason
from gateway.store import Store
from gateway.usage.receipts import SettledReceipt

MAX_LOST_ATTEMPTS = 3  # attempts a job may lose (site gone, agent lost track) before it is failed

Move = tuple[Job, JobState, str, str, tuple[str, int] | None, dict[str, object]]
"""One state change as `JobBook.transitions` takes it: (job, new state, message, site, site cursor, changes)."""

JobListener = Callable[[Job], None]
"""Told of a job's latest version each time the book remembers it (created, changed, loaded at start)."""


class JobBook:
    def __init__(self, store: Store, clock: Callable[[], datetime], bus: EventBus) -> None:
        self._store = store
        self._clock = clock
        self._bus = bus
        self._active: dict[str, Job] = {}
        self._listeners: list[JobListener] = []

    @property
    def active(self) -> Mapping[str, Job]:
        """The active jobs by id (read only: change them through `transition`)."""
        return self._active

    def listen(self, listener: JobListener) -> None:
        """Register a state listener (composition time only); it is told in registration order."""
        self._listeners.append(listener)

    def load(self) -> None:
        """Remember every active job the store holds (once, at start, after the listeners are registered)."""
        for job in self._store.active_jobs():
            self.remember(job)

    def find(self, job_id: str) -> Job | None:
        """The job, active or not (None when unknown)."""
        return self._active.get(job_id) or self._store.get_job(job_id)

    def remember(self, job: Job) -> None:
        """Keep the in-memory view (and every listener's) in step with a job already durable in the store."""
        if job.state.terminal:
            self._active.pop(job.job_id, None)
        else:
            self._active[job.job_id] = job
        for listener in self._listeners:
            listener(job)

    # ---- state changes ------------------------------------------------------------------------------------
    def transition(
        self,
        job: Job,
        state: JobState,
        message: str,
        *,
        site: str = "",
        cursor: tuple[str, int] | None = None,
        **changes: object,
    ) -> Job:
        """Move a job to `state`, durably, then announce it. Callers check legality first."""
        return self.transitions([(job, state, message, site, cursor, changes)])[0]

    def transitions(self, moves: list[Move], receipts: Sequence[SettledReceipt] = ()) -> list[Job]:
        """Several state changes made durable in one transaction (one fsync), together with the usage `receipts`
        they settle, then announced, in order."""
        now = self._clock()
        updated: list[Job] = []
        events: list[JobEvent] = []
        for job, state, message, site, _, changes in moves:
            if state.terminal or state in ATTEMPT_ENDS:
                changes.setdefault("end_time", now)
            if state.terminal and state != JobState.REJECTED:  # the reasons it waited for no longer hold
                stage = "site" if site else "dispatch"
                changes.setdefault("reasons", (Reason(stage, ReasonCode.JOB_ENDED, message, site),))
            if state.terminal and state != JobState.REJECTED:  # the pending reason is stale once a job has ended
                changes.setdefault(
                    "reasons", (Reason("site" if site else "dispatch", ReasonCode.JOB_ENDED, message, site),)
                )
            new = job.evolve(state=state, update_time=now, **changes)
            updated.append(new)
            events.append(JobEvent(job.job_id, state, now, new.attempt, site, message))
        stored = self._store.save_transitions(
            [(job, event, move[4]) for job, event, move in zip(updated, events, moves, strict=True)], receipts
        )
        for job, event in zip(updated, stored, strict=True):
            self.remember(job)
            self._bus.publish(event, job)
        return updated

    def requeue(self, job: Job, message: str) -> Job:
        """After a preemption or a lost site, queue the job for a new attempt, unless it has lost too many.

        Only LOST attempts count against the job: a preemption is the federation's own choice (bounded by the
        no-ping-pong rules of `gateway.placement.preemption`), so it never uses up the job's attempts."""
        if job.state == JobState.LOST:
            lost = sum(1 for event in self._store.events(job.job_id) if event.state == JobState.LOST)
            if lost >= MAX_LOST_ATTEMPTS:
                return self.transition(job, JobState.FAILED, f"{message}; gave up after {lost} lost attempts")
        return self.transition(
            job,
            JobState.QUEUED,
            f"{message}; queued again for attempt {job.attempt + 1}",
            placements=(),
            start_time=None,  # the next attempt's usage starts when it runs, not when this one did
        )

    def dispatched_at(self, job: Job) -> datetime | None:
        """When the gateway dispatched `job`'s current attempt (its DISPATCHED event), None if it never did."""
        times = [
            e.time
            for e in self._store.events(job.job_id)
            if e.state == JobState.DISPATCHED and e.attempt == job.attempt
        ]
        return times[-1] if times else None

    def settle(self, receipts: Sequence[SettledReceipt]) -> None:
        """Keep receipts that change no job (an attempt the gateway had already ended), durably."""
        self._store.save_transitions([], receipts)
