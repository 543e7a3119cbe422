"""The scheduler: which queued job goes where, now, and the loop that keeps asking.

Owns: the scheduling cycle (aged priority, then fair share, then age; `place`'s decision over an index of free
capacity with the policy's word on every option, remembered per job shape for the cycle by
`gateway.scheduler.cyclecache`; reservations, backfill and preemption earmarks through
`gateway.scheduler.cycleplan`; gangs started when no one site fits) and the scheduler loop, which survives a
bad cycle: the exception is logged with its traceback and counted (`cycles`), and the next cycle runs.
It is given only what it uses: the job book (the active jobs; the cycle's failures), the queue (who waits),
live usage (leases, usage, the policy's word on an option), the launcher (dispatches made durable, then sent),
the outlook (gang plans), the site registry, the policy, the reservation book, the gang coordinator, the
earmarks and the clock. Why a waiting job waits is `gateway.scheduler.outlook`.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from collections.abc import Callable
from datetime import datetime
from typing import ParamSpec, TypeVar

from fedgate.common.supervise import Cycles
from gateway.gangs.coordinator import GangCoordinator
from gateway.jobs.book import JobBook, Move
from gateway.jobs.model import Job, JobSpec, JobState, Placement, Reason
from gateway.placement.fairshare import dominant_shares, queue_keys
from gateway.placement.freeindex import FreeIndex
from gateway.placement.place import place, placed_reason
from gateway.policy.holder import PolicyHolder
from gateway.policy.quotas import Usage
from gateway.reservations.ledger import ReservationLedger
from gateway.reservations.rounds import ReservationRounds
from gateway.scheduler.cyclecache import CycleCache
from gateway.scheduler.cycleplan import CyclePlan
from gateway.scheduler.earmarks import EarmarkBook
from gateway.scheduler.launcher import Launcher
from gateway.scheduler.liveusage import LiveUsage
from gateway.scheduler.outlook import Outlook
from gateway.scheduler.queue import JobQueue
from gateway.sites.model import SiteView
from gateway.sites.registry import PreemptCommand, SiteRegistry

P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger("fedgate.gateway.scheduler")


def _collector_paused(cycle: Callable[P, R]) -> Callable[P, R]:
    """Run a scheduling cycle with Python's cyclic garbage collector paused. A cycle allocates tens of
    thousands of short-lived objects and makes no reference cycles, so the full collections its allocations
    would trigger halfway (each a walk of the gateway's whole heap) find nothing; they run after it instead."""

    @functools.wraps(cycle)
    def paused(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():
            return cycle(*args, **kwargs)
        gc.disable()
        try:
            return cycle(*args, **kwargs)
        finally:
            gc.enable()

    return paused


class Scheduler:
    def __init__(
        self,
        book: JobBook,
        queue: JobQueue,
        usage: LiveUsage,
        launcher: Launcher,
        outlook: Outlook,
        registry: SiteRegistry,
        policy: PolicyHolder,
        reservations: ReservationLedger,
        rounds: ReservationRounds,
        gangs: GangCoordinator,
        earmarks: EarmarkBook,
        clock: Callable[[], datetime],
    ) -> None:
        self.book = book  # the active jobs, read; and the cycle's failures, written
        self.queue = queue
        self.usage = usage
        self.launcher = launcher
        self.outlook = outlook
        self.registry = registry
        self.policy = policy
        self.reservations = reservations
        self.rounds = rounds
        self.gangs = gangs
        self.earmarks = earmarks
        self.clock = clock
        self.cycles = Cycles(log, "scheduling cycle")
        """The loop's cycles, completed and failed (a test waits on it instead of sleeping)."""

    def _priority(self, spec: JobSpec) -> int:
        policy = self.policy.policy
        found = policy.priorities.get(spec.priority_class) if spec.priority_class else policy.default_priority
        return found.priority if found is not None else 0

    # ---- scheduling -----------------------------------------------------------------------------------------
    @_collector_paused
    def schedule(self) -> int:
        """One scheduling cycle: place queued jobs in fair order and dispatch them. Returns how many.

        A job that cannot fit anywhere is skipped after one dictionary look-up (the largest free block per
        class, or its shape already found nowhere this cycle), so a cycle over a long queue with no room costs
        little; why it waits is worked out only when someone asks (`with_pending_reasons`).
        """
        self.rounds.tick()  # windows opening or closing change what is kept for whom
        self.gangs.tick()  # gangs whose site did not answer in time release their holds and queue again
        # One instant and one policy for the whole cycle.
        policy, now = self.policy.policy, self.clock()
        candidates = self.queue.candidates(now, lapsed=self.earmarks.lapsed(self.queue.queued))
        if not candidates:
            return 0
        candidates = self.earmarks.revisit(candidates, self.queue.queued)  # reservations and preemptions bind first
        # Higher priority first, then oldest first (job ids sort by creation time).
        hold = self.reservations.kept(self.usage.holding())
        leases = hold.withhold(self.usage.leases())  # others do not see the cards reservations keep
        views = {view.name: view for view in self.registry.views(leases)}
        usage = self.usage.usage(list(views.values()))
        # Priority (aged), then weighted dominant-resource fair share among tenants and projects, then age.
        shares = dominant_shares(usage, policy)
        active, queued = self.book.active, self.queue.queued
        jobs = [active[job_id] for job_id in candidates]
        ordered = [job_id for *_, job_id in sorted(queue_keys(jobs, self._priority, shares, policy, now))]
        # `place` over the tightest-fitting sites first, a window at a time, each verdict asked once per shape.
        cycle = CycleCache(views, leases, usage, policy, self.policy.catalogue, now)
        dispatched = 0
        moves: list[Move] = []
        # Backfill and preemption earmarks (gateway.scheduler.cycleplan): it cuts held pools in `views`/`index`.
        plan = CyclePlan(self.earmarks, now, policy, views, cycle.index, self.usage.holding(), queued, active)
        over: list[Move] = []

        def gang_placed(job: Job, part: Placement, view: SiteView) -> None:
            cycle.note_taken(job.spec, part)  # the gang's parts already count in `leases` and held usage
            plan.placed(job, part, view)

        for job_id in ordered:
            job, classes = active[job_id], queued[job_id]
            placement: Placement | None = None
            reasons: tuple[Reason, ...] = ()
            allows = self.usage.allows(job.spec, usage)
            if hold.concerns(job.spec):  # reserved cards first: its reservation's, or its project's
                if why := hold.over(job.spec):
                    over.append((job, JobState.FAILED, f"{why}; the job named it and cannot run", "", None, {}))
                    continue
                reserved = hold.reserved_views(job.spec, views)
                placement = place(
                    classes,
                    job.spec.resources.cards,
                    reserved,
                    hold.allows(job.spec, allows),
                    nodes=job.spec.resources.nodes,
                ).placement
            if placement is None and not job.spec.reservation:
                # The usual way, over the index (a job naming a reservation runs only inside it).
                placement = cycle.place(job.spec, classes)
                if placement is None:
                    decision = plan.blocked(job, classes, allows)  # backfill, preemption, a head's reservation
                    placement, reasons = (decision.placement, decision.reasons) if decision else (None, ())
            if placement is None:
                self._start_gang(job, classes, views, cycle.index, leases, usage, gang_placed)  # when it may span sites
                continue
            moves.append(self.launcher.dispatch_move(job, placement, reasons or (placed_reason(placement),)))
            hold.took(job.spec, placement)
            cycle.take(job.spec, placement)
            plan.placed(job, placement, cycle.view(placement.site))  # the site's own view, holds not cut
            dispatched += 1
        if over:
            self.book.transitions(over)
        self.launcher.launch(moves)
        for order in plan.finish():
            self.registry.send(order.site, PreemptCommand(order.job_id, order.epoch, order.grace_s))
        return dispatched

    def _start_gang(
        self,
        job: Job,
        classes: tuple[str, ...],
        views: dict[str, SiteView],
        index: FreeIndex,
        leases: dict[str, dict[str, int]],
        usage: Usage,
        placed: Callable[[Job, Placement, SiteView], None],
    ) -> None:
        """For a job no single site fits that may span sites (and names no reservation): plan a gang over
        several and, when one fits, start reserving it (its parts count as leased at once)."""
        cards = job.spec.resources.cards
        if job.spec.topology.max_sites <= 1 or job.spec.reservation:
            return
        if sum(index.total(cls) for cls in classes) < cards:
            return  # not enough free cards anywhere, however they are split
        plan = self.outlook.plan(job.spec, classes, list(views.values()), usage, self.gangs.backing_off(job.job_id))
        if not plan.spans_sites:
            return
        self.gangs.start(job, plan.parts, plan.reasons)
        assert isinstance(usage.held, dict)
        for part in plan.parts:
            usage.held[(job.spec.tenant, job.spec.project, part.accelerator_class)] += part.cards
            leases[part.site][part.accelerator_class] += part.cards
            placed(job, part, self.registry.view(part.site, leases[part.site]))  # the views and index see it

    async def run(self, period: float = 1.0, batch_window: float = 0.02) -> None:
        """Schedule on wake-ups (new job, freed cards, new capacity) and at least every `period` s, until
        cancelled. A cycle that raises is logged with its traceback and counted, and the next one runs.

        After each cycle it waits `batch_window` s, so that a burst of submissions costs one cycle, not one
        cycle per job in front of every waiting request.
        """
        while True:
            await self.queue.wait(period)
            self.cycles.run(self.schedule)
            await asyncio.sleep(batch_window)
