"""The job book: the gateway's in-memory view of its active jobs over the durable store, and its one writer.

Owns: the active jobs (every job not yet terminal), every job state change (`transition`, `transitions`: durable,
with the usage receipts they settle, in one transaction, before anyone hears of them; `requeue` after a lost or
preempted attempt), and telling its listeners. Two kinds, registered once by the composition root: the state
listeners that keep their own views in step (the scheduler's queue, live usage), each told of every job the book
remembers, in order; and the event bus that job watchers read. Nothing else writes a job's state.
Changes are written either at once on the caller's thread (`transitions`, `commit_now`) or, for a staging of
many (`gateway.jobs.staging`: the site updates of one group commit), in the book's writer thread while the
event loop goes on (`commit`); either way a job is remembered only once its change is durable, and a change
made at once to a job whose grouped write is in flight first waits for that write to land, so that the store
and the book always agree on the order of a job's changes.
It does not decide whether a change is legal (its callers check that first), nor speak to sites or gRPC.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from datetime import datetime
from typing import TypeVar

from gateway.jobs.events import EventBus
from gateway.jobs.model import Job, JobEvent, JobState
from gateway.jobs.staging import Move, Staging
from gateway.store import Store
from gateway.store.rows import usage_rows
from gateway.usage.receipts import SettledReceipt

T = TypeVar("T")

MAX_LOST_ATTEMPTS = 3  # attempts a job may lose (site gone, agent lost track) before it is failed

__all__ = ["MAX_LOST_ATTEMPTS", "JobBook", "JobListener", "Move"]

JobListener = Callable[[Job], None]
"""Told of a job's latest version each time the book remembers it (created, changed, loaded at start)."""


class JobBook:
    def __init__(self, store: Store, clock: Callable[[], datetime], bus: EventBus) -> None:
        self._store = store
        self._clock = clock
        self._bus = bus
        self._active: dict[str, Job] = {}
        self._dispatched: dict[str, tuple[int, datetime]] = {}
        """Per active job dispatched since this book started: (attempt, when), its DISPATCHED event's."""
        self._listeners: list[JobListener] = []
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="fedgate-job-book")
        self._in_flight: dict[str, tuple[Staging, Future[list[JobEvent]]]] = {}
        """Jobs whose grouped write is in the writer thread, with that write."""

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
            self._dispatched.pop(job.job_id, None)
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
        they settle, then announced, in order.

        A job whose grouped write was in flight is first brought up to date: the move applies to the version
        that write made durable, and is dropped (that version returned) when the job has ended meanwhile."""
        landed = self._land_in_flight(job.job_id for job, *_ in moves)
        ended: list[Job | None] = []  # per move: the version returned in its place when it is dropped
        kept: list[Move] = []
        for move in moves:
            latest = landed.get(move[0].job_id)
            ended.append(latest if latest is not None and latest.state.terminal else None)
            if ended[-1] is None:
                kept.append(move if latest is None else (latest, *move[1:]))
        staging = self.staging()
        updated = iter(staging.stage(kept, receipts))
        self.commit_now(staging)
        return [job if job is not None else next(updated) for job in ended]

    def staging(self) -> Staging:
        """A new, empty staging over the book's current view."""
        return Staging(self.find, self._clock())

    def commit_now(self, staging: Staging) -> None:
        """Write `staging` in one transaction on the caller's thread, then remember and announce its jobs."""
        self._land_in_flight(job.job_id for job, _, _ in staging.rows)
        stored = self._write(staging) if not staging.empty else []
        staging.landed = True
        self._announce(staging, stored)

    async def commit(self, staging: Staging) -> None:
        """Write `staging` in one transaction in the book's writer thread, then remember and announce its jobs
        and run its durable actions; raises (and remembers nothing) when the store refuses it."""
        if staging.empty:
            self.commit_now(staging)
            return
        write = self._writer.submit(self._write, staging)
        for job, _, _ in staging.rows:
            self._in_flight[job.job_id] = (staging, write)
        try:
            await asyncio.wrap_future(write)
        finally:
            self._land(staging, write)

    def _write(self, staging: Staging) -> list[JobEvent]:
        return self._store.save_transitions(staging.rows, staging.receipts, list(staging.cursors.items()))

    def _land(self, staging: Staging, write: Future[list[JobEvent]]) -> None:
        """Once a grouped write returned: remember what it made durable (nothing if it failed). Idempotent."""
        if staging.landed:
            return
        staging.landed = True
        for job, _, _ in staging.rows:
            if self._in_flight.get(job.job_id, (None,))[0] is staging:
                del self._in_flight[job.job_id]
        if not write.cancelled() and write.exception() is None:
            self._announce(staging, write.result())

    def land_writes(self) -> None:
        """Wait for every grouped write in flight and land it (blocking): for a caller about to read many jobs."""
        self._land_in_flight(list(self._in_flight))

    def read_after_writes(self, read: Callable[[], T]) -> tuple[T, frozenset[tuple[str, int]]]:
        """Run `read` on the store after every grouped write submitted so far and before any later one (in the
        writer thread, blocking: only while writes are in flight), and name the attempts whose end it saw durable
        but this book has not announced yet: (job id, attempt) of each ended attempt those writes saved. A
        listener that adds ended attempts to a figure it read (live usage) leaves these out once."""
        writes = {id(staging): (staging, write) for staging, write in self._in_flight.values()}
        if not writes:
            return read(), frozenset()
        result = self._writer.submit(read).result()
        counted = frozenset(
            (job.job_id, job.attempt)
            for staging, write in writes.values()
            if not write.cancelled() and write.exception() is None
            for job, _, _ in staging.rows
            if usage_rows(job)
        )
        return result, counted

    def _land_in_flight(self, job_ids: Iterable[str]) -> dict[str, Job]:
        """Wait (blocking: rare, and at most one transaction) for the grouped writes of these jobs that are in
        flight, and land them; returns the latest version of each job they touched."""
        landed: dict[str, Job] = {}
        for job_id in job_ids:
            entry = self._in_flight.get(job_id)
            if entry is None:
                continue
            staging, write = entry
            wait_for_futures([write])
            self._land(staging, write)
            if not write.cancelled() and write.exception() is None:
                landed[job_id] = staging.job(job_id) or self._active[job_id]
        return landed

    def _announce(self, staging: Staging, stored: list[JobEvent]) -> None:
        """Remember and announce a durable staging's jobs, in order, then run its durable actions."""
        for (job, _, _), event in zip(staging.rows, stored, strict=True):
            self.remember(job)
            if event.state == JobState.DISPATCHED and not job.state.terminal:
                self._dispatched[job.job_id] = (event.attempt, event.time)
            self._bus.publish(event, job)
        staging.run_durable_actions()

    def requeue(self, job: Job, message: str) -> Job:
        """After a preemption or a lost site, queue the job for a new attempt, unless it has lost too many.

        Only LOST attempts count against the job: a preemption is the federation's own choice (bounded by the
        no-ping-pong rules of `gateway.placement.preemption`), so it never uses up the job's attempts."""
        return self.transitions([self.requeue_move(job, message)])[0]

    def requeue_move(self, job: Job, message: str, *, staged: bool = False) -> Move:
        """The move `requeue` makes; `staged`: `job`'s LOST (or PREEMPTED) is staged, not yet in the store."""
        if job.state == JobState.LOST:
            lost = sum(1 for event in self._store.events(job.job_id) if event.state == JobState.LOST) + staged
            if lost >= MAX_LOST_ATTEMPTS:
                return (job, JobState.FAILED, f"{message}; gave up after {lost} lost attempts", "", None, {})
        changes: dict[str, object] = {
            "placements": (),
            "start_time": None,  # the next attempt's usage starts when it runs, not when this one did
        }
        return (job, JobState.QUEUED, f"{message}; queued again for attempt {job.attempt + 1}", "", None, changes)

    def dispatched_at(self, job: Job) -> datetime | None:
        """When the gateway dispatched `job`'s current attempt (its DISPATCHED event), None if it never did: from
        memory when this book made that event, else from the store (after a restart or a takeover)."""
        known = self._dispatched.get(job.job_id)
        if known is not None and known[0] == job.attempt:
            return known[1]
        times = [
            e.time
            for e in self._store.events(job.job_id)
            if e.state == JobState.DISPATCHED and e.attempt == job.attempt
        ]
        return times[-1] if times else None

    def settle(self, receipts: Sequence[SettledReceipt]) -> None:
        """Keep receipts that change no job (an attempt the gateway had already ended), durably."""
        self.transitions([], receipts)
