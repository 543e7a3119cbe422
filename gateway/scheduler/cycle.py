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
from gateway.placement.fairshare import dominant_shares, queue_keys, scope_parts
from gateway.placement.freeindex import FreeIndex
from gateway.placement.place import OptionFilter, place, placed_reason
from gateway.policy import FederationPolicy
from gateway.policy.holder import PolicyHolder
from gateway.policy.quotas import Usage
from gateway.reservations.capacity import ReservedCapacity
from gateway.reservations.ledger import ReservationLedger
from gateway.reservations.rounds import ReservationRounds
from gateway.scheduler.cyclecache import CycleCache
from gateway.scheduler.cycleplan import CyclePlan
from gateway.scheduler.earmarks import EarmarkBook
from gateway.scheduler.launcher import Launcher
from gateway.scheduler.liveusage import LiveUsage
from gateway.scheduler.outlook import Outlook
from gateway.scheduler.queue import JobQueue
from gateway.scheduler.skipping import QueueOrder, Skipping
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
        self.skipping = Skipping()  # what makes skipping the jobs that waited exact, from cycle to cycle
        self.cycles = Cycles(log, "scheduling cycle")
        """The loop's cycles, completed and failed (a test waits on it instead of sleeping)."""

    def _priority(self, spec: JobSpec) -> int:
        return self._class_priority(spec.priority_class)

    def _class_priority(self, name: str) -> int:
        policy = self.policy.policy
        found = policy.priorities.get(name) if name else policy.default_priority
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
        queued, active = self.queue.queued, self.book.active
        lapsed, self.gangs.backoff_lapsed = self.earmarks.lapsed(queued, now) or self.gangs.backoff_lapsed, False
        candidates, full = self.queue.candidates(now, lapsed=lapsed)
        if not candidates and not full and self.skipping.may_rest(self.usage.preemptible_changes):
            return 0  # nothing new, and nothing changed since a cycle that changed nothing
        hold, leases, views, usage = self._snapshot()
        # Priority (aged), then weighted dominant-resource fair share among tenants and projects, then age.
        shares = dominant_shares(usage, policy)
        # `place` over the tightest-fitting sites first, a window at a time, each verdict asked once per shape.
        cycle = CycleCache(views, leases, usage, policy, self.policy.catalogue, now)
        candidates, full = self._looked_at(candidates, full, now, shares, cycle.index, hold)
        if not candidates:
            self.skipping.settled(True)
            return 0
        candidates = self.earmarks.revisit(candidates, queued)  # reservations and preemptions bind first
        # Backfill and preemption earmarks (gateway.scheduler.cycleplan): it cuts held pools in `views`/`index`.
        plan = CyclePlan(
            self.earmarks,
            now,
            policy,
            views,
            cycle.index,
            self.usage.holding_by_id(),
            self.usage.preemptible_holding(policy),
            self.usage.releases,
            queued,
            active,
        )
        ordered = self._order(candidates, full, plan, shares, now)
        dispatched = started_gangs = 0
        moves: list[Move] = []
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
                placement, reasons = self._place_reserved(job.spec, classes, hold, views, allows, policy)
            if placement is None and not job.spec.reservation:
                # The usual way, over the index (a job naming a reservation runs only inside it); near its
                # dataset for a job that names one.
                source = policy.network.source(job.spec.dataset) if job.spec.dataset else None
                if source is None:
                    placement = cycle.place(job.spec, classes)
                elif near := cycle.place_near(job.spec, classes, source):
                    placement, reasons = near
                if placement is None:
                    decision = plan.blocked(job, classes, allows)  # backfill, preemption, a head's reservation
                    placement, reasons = (decision.placement, decision.reasons) if decision else (None, ())
            if placement is None:
                # when it may span sites
                started_gangs += self._start_gang(job, classes, views, cycle.index, leases, usage, gang_placed)
                continue
            moves.append(self.launcher.dispatch_move(job, placement, reasons or (placed_reason(placement),)))
            hold.took(job.spec, placement)
            cycle.take(job.spec, placement)
            plan.placed(job, placement, cycle.view(placement.site), indexed=True)  # the site's own view, uncut
            dispatched += 1
        self._conclude(over, moves, plan, changed=bool(dispatched or started_gangs or over))
        return dispatched

    def _conclude(self, over: list[Move], moves: list[Move], plan: CyclePlan, changed: bool) -> None:
        """The cycle's failures and dispatches made durable, then the launches and preemptions sent."""
        if over:
            self.book.transitions(over)
        self.launcher.launch(moves)
        orders = plan.finish()
        for order in orders:
            self.registry.send(order.site, PreemptCommand(order.job_id, order.epoch, order.grace_s))
        self.gangs.ask_started()  # after the launches: a site never holds a gang part on cards a launch takes
        self.skipping.settled(not (changed or orders))

    def _snapshot(self) -> tuple[ReservedCapacity, dict[str, dict[str, int]], dict[str, SiteView], Usage]:
        """What the cycle places against: the bookings' kept cards, the leases with them withheld, the sites as
        placement sees them, the usage quotas count."""
        hold = self.reservations.kept(self.usage.holding())
        leases = hold.withhold(self.usage.leases())  # others do not see the cards reservations keep
        views = {view.name: view for view in self.registry.views(leases)}
        return hold, leases, views, self.usage.usage(list(views.values()))

    def _looked_at(
        self,
        fresh: list[str],
        full: bool,
        now: datetime,
        shares: dict[tuple[str, str], float],
        index: FreeIndex,
        hold: ReservedCapacity,
    ) -> tuple[list[str], bool]:
        """The jobs the cycle looks at, and whether that is every waiting job. Not a full pass: the new ones, and
        the waiting ones the free cards could start or a booking concerns; or all when their order or the
        possible victims changed (`gateway.scheduler.skipping`)."""
        active, by_need, preemptible = self.book.active, self.queue.by_need, self.usage.preemptible_changes
        scopes = {(n.tenant, n.project, n.priority_class) for n in by_need}
        parts = scope_parts(scopes, self._class_priority, shares, self.policy.policy)
        if not full and self.skipping.must_look_at_all(now, parts, preemptible):
            fresh, full = list(self.queue.queued), True
        self.skipping.remember(now, parts, (active[j] for j in fresh), full, preemptible)
        if full:
            return fresh, True
        looked_at = dict.fromkeys(fresh)
        for need, group in by_need.items():
            if Skipping.could_start(need, index) or hold.concerns(active[next(iter(group))].spec):
                looked_at.update(group)
        return list(looked_at), False

    def _order(
        self, chosen: list[str], full: bool, plan: CyclePlan, shares: dict[tuple[str, str], float], now: datetime
    ) -> QueueOrder:
        """The chosen jobs in queue order. Not a full pass: when the cycle passes a class's head of the last cycle
        and the class has no head, the class's skipped waiting jobs still ahead are taken in (one may be head)."""
        active, policy = self.book.active, self.policy.policy
        keys = queue_keys((active[j] for j in chosen), self._priority, shares, policy, now)
        if full:
            return QueueOrder(keys)
        heads, looked_at = self.earmarks.heads(), set(chosen)

        def passed(job_id: str) -> None:
            cls = heads.pop(job_id, None)
            if cls is None or plan.head(cls) is not None:
                return
            waiting = [
                j
                for need, group in self.queue.by_need.items()
                if cls in need.classes
                for j in group
                if j not in looked_at
            ]
            looked_at.update(waiting)
            order.take_in(queue_keys((active[j] for j in waiting), self._priority, shares, policy, now))

        order = QueueOrder(keys, passed)
        return order

    @staticmethod
    def _place_reserved(
        spec: JobSpec,
        classes: tuple[str, ...],
        hold: ReservedCapacity,
        views: dict[str, SiteView],
        allows: OptionFilter,
        policy: FederationPolicy,
    ) -> tuple[Placement | None, tuple[Reason, ...]]:
        """`place` over the cards reserved for the job (its reservation's, or its project's), near its dataset
        when it names one; the reasons of a placement, or (None, ())."""
        decided = place(
            classes,
            spec.resources.cards,
            hold.reserved_views(spec, views),
            hold.allows(spec, allows),
            nodes=spec.resources.nodes,
            source=policy.network.source(spec.dataset) if spec.dataset else None,
        )
        return (decided.placement, decided.reasons) if decided.placement is not None else (None, ())

    def _start_gang(
        self,
        job: Job,
        classes: tuple[str, ...],
        views: dict[str, SiteView],
        index: FreeIndex,
        leases: dict[str, dict[str, int]],
        usage: Usage,
        placed: Callable[[Job, Placement, SiteView], None],
    ) -> bool:
        """For a job no single site fits that may span sites (and names no reservation): plan a gang over
        several and, when one fits, start reserving it (its parts count as leased at once). True if it did."""
        cards = job.spec.resources.cards
        if job.spec.topology.max_sites <= 1 or job.spec.reservation:
            return False
        if sum(index.total(cls) for cls in classes) < cards:
            return False  # not enough free cards anywhere, however they are split
        plan = self.outlook.plan(job.spec, classes, list(views.values()), usage, self.gangs.backing_off(job.job_id))
        if not plan.spans_sites:
            return False
        self.gangs.start(job, plan.parts, plan.reasons, ask=False)  # asked after the cycle's launches
        assert isinstance(usage.held, dict)
        for part in plan.parts:
            usage.held[(job.spec.tenant, job.spec.project, part.accelerator_class)] += part.cards
            leases[part.site][part.accelerator_class] += part.cards
            placed(job, part, self.registry.view(part.site, leases[part.site]))  # the views and index see it
        return True

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
