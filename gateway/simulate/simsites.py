"""Simulated sites for the what-if twin: each one an agent as the gateway sees it, on a virtual clock.

Owns: a centre's dealings with the gateway over its pools (`gateway.simulate.simpool.SimPool`, node by node,
allocated as the agent allocates): its gang-part holds (Reserve / Commit / Abort, expiring after their timeout; a Commit
extends a hold once, as the agent's `GangHolds` does), its running attempts, and its word to the gateway: the
capacity report (offered, free, free whole nodes, the largest partly free node, the centre's terms) and job
updates (`SiteUpdate`, numbered per site) given to the gateway's own `Dispatcher`, the path an agent's stream
takes. A Launch starts at once (RUNNING) and ends SUCCEEDED after the trace job's duration; a Preempt ends it
PREEMPTED after its grace; a Cancel ends it CANCELLED. A Launch or Reserve the cards or the terms cannot take is
refused as an agent refuses it (the lease handed back, or the Reserve refused with the free count). Its offer
follows the centre's windows (`CentrePolicy`, by the rule the agent offers by: `fedgate.common.offers`).
It does not decide anything the gateway decides, and it does not read a clock: the twin's loop
(`gateway.simulate.twin`) tells it the time and asks it to answer its outbox. It models no failures or latency.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from fedgate.common.offers import (
    lowest_offer,
    offer_of,
    takes,
)
from fedgate.common.terms import booking_refusal
from gateway.errors import GatewayError
from gateway.jobs.model import JobState
from gateway.reservations.model import BookCommand, ReleaseCommand
from gateway.simulate.centres import CentrePolicy
from gateway.simulate.simpool import SimPool
from gateway.simulate.sites import SiteSpec
from gateway.sites.dispatcher import Dispatcher, SiteSession, SiteUpdate
from gateway.sites.registry import (
    AbortCommand,
    CancelCommand,
    CommitCommand,
    LaunchCommand,
    PreemptCommand,
    ReserveCommand,
)

EndAt = Callable[[datetime, str, str, int, JobState], None]
"""`schedule(at, site, job_id, epoch, state)`: the twin's loop ends the attempt at `at` with `state`."""
Expiry = Callable[[datetime, str, str], None]
"""`expire(at, site, reservation_id)`: the twin's loop looks at the hold again at `at`."""
Started = Callable[[str, LaunchCommand], None]
"""`started(site, launch)`: an attempt (or a gang's part) started at the site now."""


@dataclass
class Hold:
    reservation_id: str
    job_id: str
    epoch: int
    accelerator_class: str
    taken: list[tuple[int, int]]
    timeout: timedelta
    expires: datetime
    committed: bool = False


MAX_OFFER_STEPS = 2000
"""Offer changes followed across a booking's window (the agent's `agents.core.reservations.MAX_OFFER_STEPS`)."""


@dataclass
class Attempt:
    job_id: str
    epoch: int
    accelerator_class: str
    taken: list[tuple[int, int]]
    ending: JobState = JobState.SUCCEEDED


class SimSite:
    """One centre: its pools, holds and attempts, connected to the gateway's dispatcher like an agent."""

    def __init__(
        self,
        spec: SiteSpec,
        policy: CentrePolicy | None,
        dispatcher: Dispatcher,
        clock: Callable[[], datetime],
        duration: Callable[[str], float],
        schedule: EndAt,
        expire: Expiry,
        started: Started,
    ) -> None:
        self.name = spec.name
        self.pools = {p.accelerator_class: SimPool(p) for p in spec.pools}
        self.policy = policy or CentrePolicy()
        self.dispatcher = dispatcher
        self.clock = clock
        self.duration = duration  # seconds a job runs, by gateway job id
        self.schedule = schedule
        self.expire_at = expire
        self.started = started
        self.holds: dict[str, Hold] = {}
        self.running: dict[tuple[str, int], Attempt] = {}
        self.bookings: dict[str, BookCommand] = {}
        """Advance bookings confirmed, by reservation id (they hold no devices: the gateway keeps the cards)."""
        self.sequence = 0
        self.refused: list[str] = []
        self.returned: list[str] = []
        """Launches it handed back, with why (the cards or the nodes were not free as the gateway thought)."""
        """Updates the gateway refused, with why (a stale end of an attempt it already moved past)."""
        self.session: SiteSession = dispatcher.hello(self.name, "fedgate-twin", [])
        self.report()

    # ---- what the site says ------------------------------------------------------------------------------------
    def report(self) -> None:
        """A full capacity report, as an agent sends after every change."""
        pools = [pool.report(self.offered(pool)) for _, pool in sorted(self.pools.items())]
        self.dispatcher.capacity(self.name, pools, True, self.policy.terms)

    def offered(self, pool: SimPool) -> int:
        """The pool's offer now, by the centre's windows (every card when it has none)."""
        window = self.policy.window(pool.spec.accelerator_class, self.clock())
        return offer_of(window, pool.spec.cards, pool.spec.cards)

    def _update(self, job_id: str, epoch: int, state: JobState, message: str = "", **extra: object) -> None:
        self.sequence += 1
        update = SiteUpdate(job_id, epoch, state, self.sequence, self.clock(), message=message, **extra)  # type: ignore[arg-type]
        try:
            self.dispatcher.update(self.name, update)
        except GatewayError as refused:  # the gateway moved on (e.g. a gang part handed back): an agent drops it
            self.refused.append(f"{job_id} epoch {epoch} {state.value}: {refused.message}")

    # ---- what the gateway says -----------------------------------------------------------------------------------
    def answer(self) -> bool:
        """Act on every command the gateway queued for this site. True when there was any."""
        outbox, acted = self.session.outbox, False
        while not outbox.empty():
            item = outbox.get_nowait()
            if not isinstance(item, tuple):
                break  # the stream was closed (never in the twin: no site is ever lost)
            sequence, command = item
            acted = True
            if isinstance(command, LaunchCommand):
                self._launch(command)
            elif isinstance(command, ReserveCommand):
                self._reserve(command)
            elif isinstance(command, CommitCommand):
                self._commit(command.reservation_id)
            elif isinstance(command, AbortCommand):
                self._release(command.reservation_id)
            elif isinstance(command, PreemptCommand):
                self._preempt(command)
            elif isinstance(command, CancelCommand):
                self._cancel(command)
            elif isinstance(command, BookCommand):
                self._book(command)
            elif isinstance(command, ReleaseCommand):
                self.bookings.pop(command.reservation_id, None)
            if sequence:
                self.dispatcher.acknowledged(self.name, sequence)
        if acted:
            self.report()
        return acted

    def _launch(self, command: LaunchCommand) -> None:
        key = (command.job_id, command.epoch)
        if key in self.running:
            return  # a resent launch of an attempt already running
        self._release_job(command.job_id, command.epoch)  # a gang part's hold is consumed by its launch
        pool = self.pools.get(command.accelerator_class)
        refused = self._refusal(pool, command.tenant, command.project, command.cards, command.run.image)
        taken = pool.allocate(command.cards, command.nodes) if pool is not None and not refused else None
        if taken is None:
            why = refused or f"{command.cards} {command.accelerator_class} cards are not free as the nodes asked"
            self.returned.append(f"{command.job_id} epoch {command.epoch}: {why}")
            self._update(command.job_id, command.epoch, JobState.FAILED, why, lease_returned=True)
            return
        self.running[key] = Attempt(command.job_id, command.epoch, command.accelerator_class, taken)
        self.started(self.name, command)
        self._update(command.job_id, command.epoch, JobState.RUNNING)
        end = self.clock() + timedelta(seconds=self.duration(command.job_id))
        self.schedule(end, self.name, command.job_id, command.epoch, JobState.SUCCEEDED)

    def _refusal(self, pool: SimPool | None, tenant: str, project: str, cards: int, image: str) -> str:
        """Why the centre refuses it ('' when it takes it): its terms, then its offer now (the agent's
        `judge_launch`, by the same shared rules), then a pool it does not have."""
        refused = self.policy.terms.judge(tenant=tenant, project=project, cards=cards, image=image)
        if refused is not None:
            return refused.message
        if pool is None:
            return "no such pool"
        window = self.policy.window(pool.spec.accelerator_class, self.clock())
        in_use = pool.spec.cards - pool.free_cards
        if not takes(window, self.offered(pool), cards, in_use):
            return f"{pool.spec.accelerator_class} is offered at {self.offered(pool)} cards now"
        return ""

    def _reserve(self, command: ReserveCommand) -> None:
        rid, pool = command.reservation_id, self.pools.get(command.accelerator_class)
        if rid in self.holds:
            self.dispatcher.reserve_reply(self.name, rid, True, "", pool.free_cards if pool else 0)
            return
        image = command.run.image if command.run is not None else ""
        refused = self._refusal(pool, command.tenant, command.project, command.cards, image)
        taken = pool.allocate(command.cards, command.nodes) if pool is not None and not refused else None
        if taken is None or pool is None:
            why = refused or (
                f"no pool of {command.accelerator_class}"
                if pool is None
                else f"only {pool.free_cards} {command.accelerator_class} cards free"
            )
            self.dispatcher.reserve_reply(self.name, rid, False, why, pool.free_cards if pool else 0)
            return
        timeout = command.timeout if command.timeout > timedelta(0) else timedelta(seconds=10)
        expires = self.clock() + timeout
        self.holds[rid] = Hold(rid, command.job_id, command.epoch, command.accelerator_class, taken, timeout, expires)
        self.expire_at(expires, self.name, rid)
        self.dispatcher.reserve_reply(self.name, rid, True, "", pool.free_cards)

    def _book(self, command: BookCommand) -> None:
        """Confirm an advance booking when the centre accepts the project and its pool offers the cards through
        the whole window, less the bookings it confirmed for overlapping windows (the agent's rule, by the
        shared `fedgate.common.terms.booking_refusal` and `fedgate.common.offers.lowest_offer`)."""
        rid, terms, pool = command.reservation_id, self.policy.terms, self.pools.get(command.accelerator_class)
        if rid in self.bookings:
            self.dispatcher.reserve_reply(self.name, rid, True, "")
            return

        def room() -> tuple[int, int, str]:
            assert pool is not None
            cards = pool.spec.cards
            span = (command.start, command.end)
            offer, how = lowest_offer(
                self.policy.offers, self.policy.zone, pool.spec.accelerator_class, cards, cards, span, self.clock(),
                MAX_OFFER_STEPS,
            )  # fmt: skip
            taken = sum(
                b.cards
                for b in self.bookings.values()
                if b.accelerator_class == command.accelerator_class and b.start < command.end and command.start < b.end
            )
            return offer - taken, offer, how

        refusal, _ = booking_refusal(
            terms.tenants,
            terms.projects,
            command.tenant,
            command.project,
            command.accelerator_class,
            command.cards,
            room if pool is not None else None,
            f"no pool of {command.accelerator_class}",
        )
        if refusal:
            self.dispatcher.reserve_reply(self.name, rid, False, refusal)
            return
        self.bookings[rid] = command
        self.dispatcher.reserve_reply(self.name, rid, True, "")

    def _commit(self, rid: str) -> None:
        hold = self.holds.get(rid)
        if hold is not None and not hold.committed:
            hold.committed = True
            hold.expires = self.clock() + hold.timeout
            self.expire_at(hold.expires, self.name, rid)

    def _release(self, rid: str) -> bool:
        hold = self.holds.pop(rid, None)
        if hold is None:
            return False
        self.pools[hold.accelerator_class].release(hold.taken)
        return True

    def _release_job(self, job_id: str, epoch: int) -> None:
        for rid, hold in list(self.holds.items()):
            if (hold.job_id, hold.epoch) == (job_id, epoch):
                self._release(rid)

    def _preempt(self, command: PreemptCommand) -> None:
        attempt = self.running.get((command.job_id, command.epoch))
        if attempt is None or attempt.ending == JobState.PREEMPTED:
            return
        attempt.ending = JobState.PREEMPTED
        end = self.clock() + timedelta(seconds=command.grace_s)
        self.schedule(end, self.name, command.job_id, command.epoch, JobState.PREEMPTED)

    def _cancel(self, command: CancelCommand) -> None:
        self._release_job(command.job_id, command.epoch)
        if (command.job_id, command.epoch) in self.running:
            self.end(command.job_id, command.epoch, JobState.CANCELLED)

    # ---- the twin's loop ---------------------------------------------------------------------------------------
    def end(self, job_id: str, epoch: int, state: JobState) -> bool:
        """The attempt ends now with `state` (a stale end, of an attempt already over or preempted, is ignored)."""
        attempt = self.running.get((job_id, epoch))
        if attempt is None or (attempt.ending == JobState.PREEMPTED and state == JobState.SUCCEEDED):
            return False
        del self.running[(job_id, epoch)]
        self.pools[attempt.accelerator_class].release(attempt.taken)
        code = 0 if state == JobState.SUCCEEDED else 143
        self._update(job_id, epoch, state, exit_code=code)
        self.report()
        return True

    def expire(self, rid: str) -> bool:
        """A hold whose time is up is released (a later expiry of the same hold, after a Commit, waits)."""
        hold = self.holds.get(rid)
        if hold is None or hold.expires > self.clock():
            return False
        self._release(rid)
        self.report()
        return True
