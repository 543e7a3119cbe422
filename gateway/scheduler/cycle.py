"""Scheduling: which queued job goes where, now, and why a waiting job waits.

Owns: the scheduling cycle (aged priority, then fair share, then age; `place`'s decision over an index of free
capacity with the policy's word on every option, remembered per job shape for the cycle by
`gateway.scheduler.cyclecache`; reservations, backfill and preemption holds through
`gateway.scheduler.cycleplan`; gangs started when no one site fits), the scheduler loop, and the
reason chain of a waiting job.
It does not own live usage, leases or the policy's verdict on an option (`gateway.scheduler.liveusage`), nor turning a
placement into a lease and a launch (`gateway.scheduler.launching`, which makes a cycle's dispatches durable in one
transaction before the launches go out); both are mixed in here.
It is a part of `Federation` (mixed in), split out so that each file says one thing; it relies on the
Federation's books (`active`, `_queued`, `_holding`, ...) and on its `transition` for every state change.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import ParamSpec, TypeVar

from fedgate.common.supervise import Cycles
from gateway.gangs.coordinator import GangCoordinator
from gateway.gangs.plan import GangPlan, plan_gang
from gateway.jobs.model import Job, JobSpec, JobState, Placement, Reason
from gateway.placement.fairshare import dominant_shares, queue_keys
from gateway.placement.freeindex import FreeIndex
from gateway.placement.place import OptionFilter, place, placed_reason
from gateway.policy import FederationPolicy
from gateway.policy.holder import PolicyHolder
from gateway.policy.quotas import Usage
from gateway.reservations.book import ReservationBook
from gateway.scheduler.cyclecache import CycleCache
from gateway.scheduler.cycleplan import CyclePlan
from gateway.scheduler.earmarks import HoldBook
from gateway.scheduler.launching import Launching, Move
from gateway.scheduler.liveusage import LiveUsage
from gateway.sites.model import SiteView
from gateway.sites.registry import PreemptCommand, SiteRegistry

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


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


class Scheduling(LiveUsage, Launching):
    policy: PolicyHolder
    clock: Callable[[], datetime]
    registry: SiteRegistry
    wakeup: asyncio.Event
    active: dict[str, Job]
    _queued: dict[str, tuple[str, ...]]
    _fresh: list[str]
    _capacity_grew: bool
    _holding: dict[str, Job]
    reservations: ReservationBook
    queue_holds: HoldBook
    gangs: GangCoordinator

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
        raise NotImplementedError  # the Federation's

    def _priority(self, spec: JobSpec) -> int:
        raise NotImplementedError  # the Federation's

    # ---- scheduling -----------------------------------------------------------------------------------------
    @_collector_paused
    def schedule(self) -> int:
        """One scheduling cycle: place queued jobs in fair order and dispatch them. Returns how many.

        A job that cannot fit anywhere is skipped after one dictionary look-up (the largest free block per
        class, or its shape already found nowhere this cycle), so a cycle over a long queue with no room costs
        little; why it waits is worked out only when someone asks (`with_pending_reasons`).
        """
        self.reservations.tick()  # windows opening or closing change what is kept for whom
        self.gangs.tick()  # gangs whose site did not answer in time release their holds and queue again
        candidates = self._candidates()
        if not candidates:
            return 0
        candidates = self.queue_holds.revisit(candidates, self._queued)  # reservations and preemptions bind first
        # Higher priority first, then oldest first (job ids sort by creation time).
        hold = self.reservations.hold(self._holding.values())
        leases = hold.withhold(self.leases())  # others do not see the cards reservations keep
        views = {view.name: view for view in self.registry.views(leases)}
        usage = self.usage(list(views.values()))
        # Priority (aged), then weighted dominant-resource fair share among tenants and projects, then age.
        policy, now = self.policy.policy, self.clock()  # one instant and one policy for the whole cycle
        shares = dominant_shares(usage, policy)
        jobs = [self.active[job_id] for job_id in candidates]
        ordered = [job_id for *_, job_id in sorted(queue_keys(jobs, self._priority, shares, policy, now))]
        # `place` over the tightest-fitting sites first, a window at a time, each verdict asked once per shape.
        cycle = CycleCache(views, leases, usage, policy, self.policy.catalogue, now)
        dispatched = 0
        moves: list[Move] = []
        # Backfill and preemption earmarks (gateway.scheduler.cycleplan): it cuts held pools in `views`/`index`.
        plan = CyclePlan(
            self.queue_holds, now, policy, views, cycle.index, self._holding.values(), self._queued, self.active
        )
        over: list[Move] = []

        def gang_placed(job: Job, part: Placement, view: SiteView) -> None:
            cycle.note_taken(job.spec, part)  # the gang's parts already count in `leases` and held usage
            plan.placed(job, part, view)

        for job_id in ordered:
            job, classes = self.active[job_id], self._queued[job_id]
            placement: Placement | None = None
            reasons: tuple[Reason, ...] = ()
            allows = self.allows(job.spec, usage)
            if hold.concerns(job.spec):  # reserved cards first: its reservation's, or its project's
                if why := hold.over(job.spec):
                    over.append((job, JobState.FAILED, f"{why}; the job named it and cannot run", "", None, {}))
                    continue
                reserved = hold.reserved_views(job.spec, views)
                placement = place(classes, job.spec.resources.cards, reserved, hold.allows(job.spec, allows)).placement
            if placement is None and not job.spec.reservation:
                # The usual way, over the index (a job naming a reservation runs only inside it).
                placement = cycle.place(job.spec, classes)
                if placement is None:
                    decision = plan.blocked(job, classes, allows)  # backfill, preemption, a head's reservation
                    placement, reasons = (decision.placement, decision.reasons) if decision else (None, ())
            if placement is None:
                self._start_gang(job, classes, views, cycle.index, leases, usage, gang_placed)  # when it may span sites
                continue
            moves.append(self._dispatch_move(job, placement, reasons or (placed_reason(placement),)))
            hold.took(job.spec, placement)
            cycle.take(job.spec, placement)
            plan.placed(job, placement, cycle.view(placement.site))  # the site's own view, holds not cut
            dispatched += 1
        if over:
            self.transitions(over)
        self._launch(moves)
        for order in plan.finish():
            self.registry.send(order.site, PreemptCommand(order.job_id, order.epoch, order.grace_s))
        return dispatched

    def _candidates(self) -> list[str]:
        """The queued jobs this cycle looks at: all of them when capacity may have grown, else the new ones."""
        if self.queue_holds.lapsed(self._queued):
            self._capacity_grew = True  # a job that held cards left the queue: what it held is free for all
        if self._capacity_grew:
            # Capacity may have grown: every queued job gets a look.
            candidates = list(self._queued)
        else:
            # Nothing freed since the last full pass: jobs that did not fit then still do not; only new ones.
            candidates = [job_id for job_id in self._fresh if job_id in self._queued]
        self._capacity_grew, self._fresh = False, []
        return candidates

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
        plan = self.plan(job.spec, classes, list(views.values()), usage, self.gangs.backing_off(job.job_id))
        if not plan.spans_sites:
            return
        self.gangs.start(job, plan.parts, plan.reasons)
        assert isinstance(usage.held, dict)
        for part in plan.parts:
            usage.held[(job.spec.tenant, job.spec.project, part.accelerator_class)] += part.cards
            leases[part.site][part.accelerator_class] += part.cards
            placed(job, part, self.registry.view(part.site, leases[part.site]))  # the views and index see it

    def plan(
        self,
        spec: JobSpec,
        classes: Sequence[str],
        views: list[SiteView],
        usage: Usage,
        backing_off: Collection[str] = (),
        policy: FederationPolicy | None = None,
        narrow: Callable[[OptionFilter], OptionFilter] = lambda allows: allows,
    ) -> GangPlan:
        """Where the job would go now: one site, or a gang over several when it allows that. `narrow` adds a
        word of its own to the policy's on each option (what reservations keep)."""
        allows = narrow(self.allows(spec, usage, policy))
        part = max(1, spec.topology.min_cards_per_site) if spec.topology.max_sites > 1 else 0
        part_allows = narrow(self.allows(spec, usage, policy, part)) if part else None
        return plan_gang(classes, spec.resources.cards, spec.topology, views, allows, backing_off, part_allows)

    def with_pending_reasons(self, job: Job, snapshot: tuple[list[SiteView], Usage] | None = None) -> Job:
        """A queued job with the live reason chain of why it waits (policy, then each site's answer).
        `snapshot` (sites and usage) lets a listing take one snapshot for all its jobs."""
        if job.state != JobState.QUEUED:
            return job
        classes = self._queued.get(job.job_id) or self.policy.catalogue.classes_for(job.spec)
        views, usage = snapshot or self.snapshot()
        spec = job.spec
        hold = self.reservations.hold(self._holding.values())
        backing_off = self.gangs.backing_off(job.job_id) if spec.topology.max_sites > 1 else ()
        views = hold.views_for(spec, views)
        outcome = self.plan(spec, classes, views, usage, backing_off, narrow=lambda allows: hold.allows(spec, allows))
        kept = tuple(r for r in job.reasons if r.stage in {"policy", "site"})
        notes = () if outcome.parts else hold.notes(spec)
        return job.evolve(reasons=kept + outcome.reasons + notes + self.queue_holds.reasons_for(job.job_id, classes))

    def snapshot(self) -> tuple[list[SiteView], Usage]:
        """The sites as placement sees them now (less what reservations keep), and the live usage quotas are
        checked against."""
        views = self.registry.views(self.reservations.hold(self._holding.values()).withhold(self.leases()))
        return views, self.usage(views)

    @functools.cached_property
    def cycles(self) -> Cycles:
        """The scheduler loop's cycles, counted (and guarded): tests wait on `cycles.wait_for` instead of sleeping."""
        return Cycles(log, "scheduling cycle")

    async def run_scheduler(self, period: float = 1.0, batch_window: float = 0.02) -> None:
        """Schedule on wake-ups (new job, freed cards, new capacity) and at least every `period` s.

        After each cycle it waits `batch_window` s, so that a burst of submissions costs one cycle, not one
        cycle per job in front of every waiting request.
        """
        while True:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancel that lands as the event
                # fires, and the cancelled scheduler then runs on for ever (a gateway that never stops).
                async with asyncio.timeout(period):
                    await self.wakeup.wait()
            except TimeoutError:
                self._capacity_grew = True  # the periodic full pass: a safety net for anything missed
            self.wakeup.clear()
            self.cycles.run(self.schedule)
            await asyncio.sleep(batch_window)
