"""The site side of the protocol: hello, capacity, job updates, and reconciliation on reconnect.

Owns: the checks a site's word must pass before it changes anything (the state is one a site may send, the
job is leased to this site, the epoch is current, the update is new, the transition is legal), each site's
durable update cursor and the replay rule (an update numbered at or below it is acknowledged only when it would
change nothing, and refused with SEQUENCE_REUSED otherwise: the agent's numbering went back), and the
reconciliation on every Hello: stale attempts cancelled, missed launches resent, and jobs the gateway holds
RUNNING here that the agent no longer knows declared LOST (a wiped or rolled-back agent journal). The rules are
written for agent authors in `proto/fedgate/v1/site.proto`. A refused update changes nothing in the store.
Identity is already verified by the transport layer: `site` here is the name from the caller's certificate. A
usage receipt on an update that ends an attempt is checked (`gateway.usage.receipts`) before anything is
written and settled in the same transaction as the transition; a bad receipt refuses the whole update. A site's
word on a job is written only through the job book; launches come from the launcher, gang replies go to the
gang coordinator, booking replies to the reservation book, log chunks to the log relay: each a collaborator
given to the constructor.
Updates from the transport go through a group commit (`submit`): the updates that arrive while a commit is in
flight, from any stream, are checked in arrival order against the jobs as the earlier ones leave them (a
`gateway.jobs.staging.Staging`), written in one transaction off the event loop, and each answered only once that
transaction is durable; a batch the store refuses answers none of its updates and changes nothing in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from fedgate.common.reasons import ReasonCode
from fedgate.common.rendezvous import RendezvousPoint
from gateway.errors import GatewayError, InvalidArgument, PermissionDenied, StaleEpoch
from gateway.gangs.coordinator import PREFIX as GANG_PREFIX
from gateway.gangs.coordinator import GangCoordinator
from gateway.gangs.parts import part_reported
from gateway.jobs.book import JobBook
from gateway.jobs.model import ATTEMPT_ENDS, Job, JobState, Placement, Reason, can_transition
from gateway.jobs.staging import Staging
from gateway.policy.holder import PolicyHolder
from gateway.reservations.model import is_booking
from gateway.reservations.rounds import ReservationRounds
from gateway.scheduler.launcher import Launcher
from gateway.sites.logs import LogRelay
from gateway.sites.model import Pool, SiteTerms, check_capacity
from gateway.sites.registry import CancelCommand, Outbox, SiteRegistry
from gateway.store import Store
from gateway.store.commit import GroupCommitter, Refused
from gateway.usage.receipts import (
    RECEIPT_STATES,
    Countersigner,
    ReceiptInvalid,
    SettledReceipt,
    SiteReceipt,
    check_receipt,
)

log = logging.getLogger("fedgate.gateway.sites")

SITE_STATES = frozenset(
    {JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.PREEMPTED, JobState.LOST}
)
"""The states a site may report. QUEUED, RESERVING, DISPATCHED and REJECTED are the gateway's alone; a site hands
a lease back with FAILED and `lease_returned` (QUEUED is accepted in its place only with the flag)."""


@dataclass(frozen=True)
class SiteUpdate:
    job_id: str
    epoch: int
    state: JobState
    sequence: int
    time: datetime
    exit_code: int | None = None
    """None: the site gave none (a running attempt, an engine that did not say)."""
    message: str = ""
    device_indices: tuple[int, ...] = ()
    lease_returned: bool = False
    receipt: SiteReceipt | None = None
    site_certificate: bytes = b""
    """DER of the certificate the site presented on the connection this update came in on."""


@dataclass(frozen=True)
class RunningAttempt:
    job_id: str
    epoch: int
    state: JobState


@dataclass(frozen=True)
class SiteSession:
    site: str
    connection_id: int
    outbox: Outbox
    last_update_sequence: int
    cancelled: tuple[tuple[RunningAttempt, str], ...] = ()
    """Attempts the agent said it runs that the gateway cancelled on reconnect, each with why."""


class Dispatcher:
    def __init__(
        self,
        book: JobBook,
        store: Store,
        registry: SiteRegistry,
        launcher: Launcher,
        gangs: GangCoordinator,
        reservations: ReservationRounds,
        logs: LogRelay,
        policy: PolicyHolder,
        clock: Callable[[], datetime],
        on_capacity: Callable[[], None],
        countersigner: Countersigner | None = None,
    ) -> None:
        self.book = book
        self.store = store  # read only: the sites' durable update cursors
        self.registry = registry
        self.launcher = launcher
        self.gangs = gangs
        self.reservations = reservations
        self.logs = logs
        self.policy = policy
        self.clock = clock
        self.on_capacity = on_capacity
        """Called after a capacity report: cards may have come (the scheduler's queue looks at every job)."""
        self.countersigner = countersigner
        """Settles usage receipts; without one, receipts are checked but not kept."""
        self._cursors: dict[str, int] = {}
        """Each site's durable update cursor (what the store holds), read once from the store."""
        self._updates: GroupCommitter[tuple[str, SiteUpdate], ReceiptInvalid | None] = GroupCommitter(
            self._commit_updates
        )
        self.receipts: Counter[str] = Counter()
        """Usage receipts checked: `settled` (countersigned) and `refused` (invalid), since start (metrics)."""

    def hello(
        self,
        site: str,
        agent_version: str,
        running: list[RunningAttempt],
        resume_cursor: int = 0,
        rendezvous: RendezvousPoint | None = None,
    ) -> SiteSession:
        """A site's new stream. `running`: the attempts the agent holds whose end the gateway has not
        acknowledged (live ones with their state, ended ones with their final state); `resume_cursor`: the
        highest gateway message sequence it processed; `rendezvous`: its point for cross-site gangs."""
        self.book.land_writes()  # reconcile against every update already made durable
        connection_id, outbox = self.registry.connect(site, agent_version, self.clock(), resume_cursor)
        self.registry.get(site).rendezvous = rendezvous
        cursor = self._cursor(site)
        cancelled = self._reconcile(site, running)
        self.reservations.site_connected(site)
        return SiteSession(site, connection_id, outbox, cursor, cancelled)

    def acknowledged(self, site: str, sequence: int) -> None:
        """The site's Ack: it processed every gateway message up to `sequence`."""
        self.registry.touch(site, self.clock())
        self.registry.acknowledge(site, sequence)

    def _cursor(self, site: str) -> int:
        cursor = self._cursors.get(site)
        if cursor is None:
            cursor = self._cursors[site] = self.store.site_cursor(site)
        return cursor

    def _staging(self) -> Staging:
        """A staging of the book whose raised site cursors this dispatcher learns once it is durable."""
        staging = self.book.staging()

        def raise_cursors() -> None:
            for site, sequence in staging.cursors.items():
                self._cursors[site] = max(self._cursor(site), sequence)

        staging.when_durable(raise_cursors)
        return staging

    def _reconcile(self, site: str, running: list[RunningAttempt]) -> tuple[tuple[RunningAttempt, str], ...]:
        """The gateway's view wins: stale or unknown attempts are cancelled (and returned, with why, for the
        audit log), missed launches resent, and attempts the gateway holds RUNNING here that the agent does
        not list are LOST (its journal was wiped or rolled back: nothing will ever report their end)."""
        reported = {(r.job_id, r.epoch) for r in running}
        cancelled = []
        staging = self._staging()
        for attempt in running:
            if attempt.state.terminal or attempt.state in {JobState.PREEMPTED, JobState.LOST}:
                continue  # ended at the site; its final update follows this Hello
            job = self.book.active.get(attempt.job_id)
            if job is None or job.epoch != attempt.epoch or site not in job.sites:
                why = (
                    "the job is not active at the gateway"
                    if job is None
                    else f"the current lease is epoch {job.epoch} at {','.join(job.sites) or 'no site'}"
                )
                log.warning("site %s runs job %s epoch %d: cancelled, %s", site, attempt.job_id, attempt.epoch, why)
                self.registry.send(site, CancelCommand(attempt.job_id, attempt.epoch, "not leased to this site"))
                cancelled.append((attempt, why))
        for job in list(self.book.active.values()):
            if job.state == JobState.DISPATCHED and site in job.sites and (job.job_id, job.epoch) not in reported:
                placement = next(p for p in job.placements if p.site == site)
                self._resend_launch(site, job.job_id, placement)
        for job in list(self.book.active.values()):
            if job.state != JobState.RUNNING or site not in job.sites or (job.job_id, job.epoch) in reported:
                continue
            part = next(p for p in job.placements if p.site == site)
            if part.state is not None and (part.state.terminal or part.state in ATTEMPT_ENDS):
                continue  # a gang part that already ended here: the gateway holds its end
            why = f"{site} reconnected without attempt {job.epoch}: its agent lost track of it"
            log.warning("job %s epoch %d: lost at %s (not in the agent's Hello)", job.job_id, job.epoch, site)
            lost = SiteUpdate(job.job_id, job.epoch, JobState.LOST, 0, self.clock(), message=why)
            self._apply(staging, site, job, lost, None)
        self.book.commit_now(staging)
        return tuple(cancelled)

    def _resend_launch(self, site: str, job_id: str, placement: Placement) -> None:
        command = self.launcher.launch_command(self.book.active[job_id], placement)
        if command is not None:
            self.registry.send(site, command)

    def capacity(self, site: str, pools: list[Pool], full: bool, terms: SiteTerms | None = None) -> None:
        self.registry.report(site, pools, full, self.clock(), terms)
        self.on_capacity()

    def update(self, site: str, update: SiteUpdate) -> ReceiptInvalid | None:
        """Apply one job update from `site` at once, in its own transaction on the caller's thread (the
        transport groups them instead: `submit`). Raises (and changes nothing) when the site may not say this;
        what it returns and when is `_stage_update`'s."""
        self.registry.touch(site, self.clock())
        self.book.land_writes()
        staging = self._staging()
        refused = self._stage_update(staging, site, update)
        self.book.commit_now(staging)
        return refused

    def submit(self, site: str, update: SiteUpdate) -> asyncio.Future[ReceiptInvalid | None]:
        """Hand one job update from `site` to the group commit, now (its place in the order is taken at once).
        The future holds `update`'s answer once the update's transaction is durable, or its refusal (a
        GatewayError that changed nothing), or the store's error when its batch could not be made durable (no
        update of that batch is answered: the agent sends it again)."""
        self.registry.touch(site, self.clock())
        return self._updates.enqueue((site, update))

    async def settle(self) -> None:
        """Return once every update already handed to `submit` is durable or failed."""
        await self._updates.settle()

    async def _commit_updates(self, batch: list[tuple[str, SiteUpdate]]) -> list[ReceiptInvalid | Refused | None]:
        """One group commit: each update checked and staged in arrival order (a refused one stages nothing),
        then all of them written in one transaction off the event loop."""
        staging = self._staging()
        answers: list[ReceiptInvalid | Refused | None] = []
        for site, update in batch:
            try:
                answers.append(self._stage_update(staging, site, update))
            except GatewayError as refused:  # checked before staging anything: the others go on
                answers.append(Refused(refused))
        await self.book.commit(staging)
        return answers

    def _stage_update(self, staging: Staging, site: str, update: SiteUpdate) -> ReceiptInvalid | None:
        """Stage one job update from `site`. Raises (and stages nothing) when the site may not say this.

        An end whose receipt does not hold is applied all the same (the site's stream is what vouches for the
        end; a job must never stay RUNNING for want of a receipt) and its receipt is not settled: the refusal is
        returned, for the caller to audit. Usage then counts the gateway's own times for that attempt.

        An update numbered at or below the site's cursor is a replay when it would change nothing (the job is
        no longer leased to the site under that epoch, or already holds that state or a later one): accepted
        without effect, so that an agent's journal drains. Otherwise the agent's numbering went back in time
        (a restored or wiped journal): refused with SEQUENCE_REUSED, naming the cursor, never dropped silently.
        """
        _check_site_state(update)
        job = staging.job(update.job_id)
        cursor = staging.cursor(site, self._cursor(site))
        if update.sequence <= cursor:
            if _changes_nothing(site, job, update):
                return None
            raise GatewayError(
                f"update {update.sequence} is numbered at or below {cursor}, the last update of site {site} the "
                f"gateway applied, but it is not one it applied: number updates above {cursor} (a restored or "
                "wiped journal must continue after Welcome.last_update_sequence) and send it again",
                reason=ReasonCode.SEQUENCE_REUSED,
                metadata={"last_update_sequence": str(cursor)},
            )
        if job is None or site not in job.sites:
            raise PermissionDenied(f"job {update.job_id} is not leased to site {site}", reason="JOB_NOT_LEASED_TO_SITE")
        if update.epoch != job.epoch:
            raise StaleEpoch(
                f"update for job {job.job_id} carries epoch {update.epoch}; the current lease is epoch {job.epoch}"
            )
        if job.state == update.state or job.state.terminal:
            # Nothing new (a replay, or the gateway already ended the job, e.g. a user cancel). The attempt's
            # receipt still counts: it is settled on its own, once. The exit code the site reports for an attempt
            # the gateway ended first (a cancel) is kept, once: it is what the job's owner wants to read.
            receipts, refused = self._settle(site, job, update)
            if refused is None and job.state.terminal and job.exit_code is None and update.exit_code is not None:
                self._keep_exit_code(staging, site, job, update, receipts)
                return refused
            staging.stage([], receipts)
            staging.raise_cursor(site, update.sequence)
            return refused
        if update.lease_returned:
            self._return_lease(staging, site, job, update)
            return None
        return self._apply(staging, site, job, update, (site, update.sequence))

    def _apply(
        self, staging: Staging, site: str, job: Job, update: SiteUpdate, cursor: tuple[str, int] | None
    ) -> ReceiptInvalid | None:
        """Stage the site's word on a job it leases, with the cursor (None: the gateway's own finding)."""
        if len(job.placements) > 1:
            return self._gang_update(staging, site, job, update, cursor)
        if not can_transition(job.state, update.state):
            raise GatewayError(
                f"job {job.job_id} cannot go from {job.state.value} to {update.state.value}",
                reason="ILLEGAL_TRANSITION",
            )
        receipts, refused = self._settle(site, job, update)  # checked before anything is written
        changes: dict[str, object] = {}
        if update.state == JobState.RUNNING:
            changes["start_time"] = self._start_time(job, update)
            changes["placements"] = tuple(
                replace(p, device_indices=update.device_indices) if p.site == site else p for p in job.placements
            )
        if update.state.terminal:
            changes["exit_code"] = update.exit_code
        message = update.message or f"{update.state.value.lower()} at {site}"
        (updated,) = staging.stage([(job, update.state, message, site, cursor, changes)], receipts)
        if update.state in {JobState.PREEMPTED, JobState.LOST}:
            staging.stage([self.book.requeue_move(updated, message, staged=True)])
        return refused

    def _keep_exit_code(
        self, staging: Staging, site: str, job: Job, update: SiteUpdate, receipts: tuple[SettledReceipt, ...]
    ) -> None:
        """Record the exit code of an attempt the gateway had already ended, with the cursor and the receipts: the
        job keeps its state and end time; its event says what the site reported."""
        message = f"{site} reported {update.state.value.lower()} with exit code {update.exit_code}"
        changes: dict[str, object] = {"exit_code": update.exit_code, "end_time": job.end_time}
        staging.stage([(job, job.state, message, site, (site, update.sequence), changes)], receipts)

    def _start_time(self, job: Job, update: SiteUpdate) -> datetime:
        """When the attempt started, by the gateway's record: the site's word, but never before the gateway
        dispatched it nor after the gateway heard of it (a backdated RUNNING bills nothing extra)."""
        dispatched = job.update_time if job.state == JobState.DISPATCHED else self.book.dispatched_at(job)
        start = max(update.time, dispatched) if dispatched is not None else update.time
        return min(start, self.clock())

    def _gang_update(
        self, staging: Staging, site: str, job: Job, update: SiteUpdate, cursor: tuple[str, int] | None
    ) -> ReceiptInvalid | None:
        """One part of a gang reported: the job moves only when the parts add up (`gateway.gangs.parts`). The part's
        state is saved in its placement by the same transition, so what the parts add up to survives a restart."""
        outcome = part_reported(job, site, update.state, update.device_indices, update.message)
        if outcome.state != job.state and not can_transition(job.state, outcome.state):
            raise GatewayError(
                f"job {job.job_id} cannot go from {job.state.value} to {outcome.state.value}",
                reason="ILLEGAL_TRANSITION",
            )
        receipts, refused = self._settle(site, job, update)  # each part's site signs its own; checked first
        changes: dict[str, object] = {"placements": outcome.placements}
        if outcome.state == JobState.RUNNING and job.state != JobState.RUNNING:
            changes["start_time"] = self._start_time(job, update)
        if outcome.state.terminal:
            changes["exit_code"] = update.exit_code
        (updated,) = staging.stage([(job, outcome.state, outcome.message, site, cursor, changes)], receipts)
        for other in outcome.cancel_sites:
            self._send_when_durable(staging, other, CancelCommand(job.job_id, job.epoch, outcome.message))
        if outcome.state in {JobState.PREEMPTED, JobState.LOST}:
            staging.stage([self.book.requeue_move(updated, outcome.message, staged=True)])
        return refused

    def _send_when_durable(self, staging: Staging, site: str, command: CancelCommand) -> None:
        staging.when_durable(lambda: self.registry.send(site, command))

    def reserve_reply(
        self, site: str, reservation_id: str, accepted: bool, reason: str, free: int | None = None
    ) -> None:
        """A site's answer to a Reserve, routed by the reservation id's prefix (the one place that does). `free`
        is the site's free cards of the class when it replied (None when not known)."""
        self.registry.touch(site, self.clock())
        if is_booking(reservation_id):
            self.reservations.site_replied(site, reservation_id, accepted, reason)
            return
        if reservation_id.startswith(GANG_PREFIX):
            self.gangs.reply(site, reservation_id, accepted, reason, free)
            return
        raise InvalidArgument(
            f"reservation {reservation_id[:80]!r} is not one this gateway made", reason="UNKNOWN_RESERVATION"
        )

    def _settle(
        self, site: str, job: Job, update: SiteUpdate
    ) -> tuple[tuple[SettledReceipt, ...], ReceiptInvalid | None]:
        """The update's receipt, checked against the gateway's record and countersigned (empty when it carries
        none), or, when it does not hold, no receipt and why. A receipt on an update that ends nothing is
        refused with the whole update (ReceiptInvalid raised)."""
        if update.receipt is None:
            return (), None
        if update.state not in RECEIPT_STATES:
            raise ReceiptInvalid(f"a receipt rides only on the update that ends an attempt, not {update.state.value}")
        now = self.clock()
        try:
            check_receipt(
                update.receipt,
                update.site_certificate,
                site,
                job,
                update.state,
                now,
                dispatched_at=self.book.dispatched_at(job),
            )
        except ReceiptInvalid as refused:
            self.receipts["refused"] += 1
            return (), refused
        if self.countersigner is None:
            return (), None
        settled = self.countersigner.settle(update.receipt, update.site_certificate, now)
        self.receipts["settled"] += 1
        return (settled,), None

    def _return_lease(self, staging: Staging, site: str, job: Job, update: SiteUpdate) -> None:
        """The site declined to start the attempt: queue the job again; the attempt does not count."""
        if job.state != JobState.DISPATCHED:
            raise GatewayError(
                f"job {job.job_id} is {job.state.value}; only a dispatched job's lease can be returned",
                reason="ILLEGAL_TRANSITION",
            )
        why = update.message or "no reason given"
        for other in job.placements:  # the rest of a gang does not run without this part
            if other.site != site:
                self._send_when_durable(
                    staging, other.site, CancelCommand(job.job_id, job.epoch, f"{site} returned its part")
                )
        changes: dict[str, object] = {
            "placements": (),
            "attempt": job.attempt - 1,
            "reasons": (Reason("site", "LEASE_RETURNED", f"{site} declined to start it: {why}", site),),
        }
        message = f"{site} returned the lease: {why}"
        staging.stage([(job, JobState.QUEUED, message, site, (site, update.sequence), changes)])

    def goodbye(self, site: str, connection_id: int) -> None:
        if self.registry.is_current(site, connection_id):
            self.gangs.site_lost(site)  # a site gone mid-reservation counts as a refusal
        self.registry.disconnect(site, connection_id)
        self.logs.site_gone(site, connection_id)

    def deliver_log(self, site: str, stream_id: int, data: bytes, *, end: bool = False, error: str = "") -> None:
        """A chunk of job output from `site` (best effort: a chunk for a stream it did not open is dropped)."""
        self.logs.deliver(site, stream_id, data, end=end, error=error)

    def check_pools(self, pools: list[Pool]) -> None:
        """Refuse a capacity report outside the contract's bounds (`check_capacity`), or that names a class the
        federation's catalogue does not know."""
        check_capacity(pools)
        catalogue = self.policy.catalogue
        for pool in pools:
            if pool.accelerator_class not in catalogue:
                raise InvalidArgument(
                    f"pool class {pool.accelerator_class!r} is not in the federation's catalogue",
                    reason="UNKNOWN_ACCELERATOR_CLASS",
                )


def _check_site_state(update: SiteUpdate) -> None:
    """Refuse a state a site may not send (QUEUED without the lease-returned flag would put the job back in the
    queue without the lease being handed back)."""
    if update.lease_returned:
        if update.state not in {JobState.FAILED, JobState.QUEUED}:
            raise GatewayError(
                f"a returned lease is reported as FAILED with lease_returned, not {update.state.value}",
                reason=ReasonCode.ILLEGAL_SITE_STATE,
            )
        return
    if update.state not in SITE_STATES:
        allowed = ", ".join(sorted(s.value for s in SITE_STATES))
        raise GatewayError(
            f"a site may not report {update.state.value} (it may report {allowed}; a site that will not start "
            "an attempt sends FAILED with lease_returned)",
            reason=ReasonCode.ILLEGAL_SITE_STATE,
        )


def _changes_nothing(site: str, job: Job | None, update: SiteUpdate) -> bool:
    """True when applying `update` now would change nothing: the lease moved on (another epoch, another site,
    an unknown job), or the gateway already holds the attempt in this state or past it."""
    if job is None or site not in job.sites or job.epoch != update.epoch:
        return True
    if job.state.terminal or job.state == update.state:
        return True
    if update.lease_returned:
        return False  # still DISPATCHED here: the lease was not handed back under this number
    part = next((p for p in job.placements if p.site == site), None)
    if part is not None and part.state == update.state:
        return True
    return update.state == JobState.RUNNING and job.state != JobState.DISPATCHED
