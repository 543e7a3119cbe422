"""The agent's core: turns gateway commands into backend calls and job updates. No gRPC here.

Owns: the attempts running at this site (by job and epoch), device allocation per pool, idempotent launches
and stale-epoch refusal (a refusal by `agents.core.admission` hands the lease back), stopping attempts (cancel,
preempt, max runtime, shutdown), numbering job updates into the journal, and routing each gateway command to
its owner. A window that shrinks an offer never stops a running job. It does not own the connection: the
transport asks it for Hello contents, capacity and terms, hands it commands, and sends what it puts in the
journal, re-sending after a reconnect until acknowledged. Jobs keep running whether or not a gateway is
connected. Delegated: capacity and offers (`agents.core.offers`), gang holds (`agents.core.gangholds`),
advance reservations (`agents.core.reservations`), the backend's LaunchSpec (`agents.core.launchspec`), re-attaching
journaled attempts after a restart (`agents.core.recovery`) and each started attempt's signed usage receipt, made
once (`agents.core.usage`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from agents.backends.base import Backend, JobHandle, LaunchSpec
from agents.core.admission import admit
from agents.core.attempts import Attempt, AttemptTable, update_of
from agents.core.commands import (
    Abort,
    Cancel,
    Commit,
    Drain,
    GatewayCommand,
    Launch,
    Preempt,
    Reserve,
    UpdateRejected,
    UpdatesAcknowledged,
)
from agents.core.config import AgentConfig
from agents.core.devices import DevicePool
from agents.core.gangholds import GangHolds
from agents.core.launchspec import PREEMPT_GRACE_ENV, launch_spec
from agents.core.model import JobState, JobUpdate, PoolCapacity, ReserveReply, RunningJob
from agents.core.offers import current_offers, pool_capacities, seconds_until_change
from agents.core.recovery import reattach
from agents.core.reservations import SiteReservations, is_advance_reservation
from agents.core.supervisor import AttemptSupervisor
from agents.core.usage import ReceiptSigner, needs_resend_without_receipt, sign_usage, without_receipt
from agents.errors import BackendError, LaunchRefused
from agents.journal.base import StartedAttempt, UpdateJournal
from fedgate.common.reasons import ReasonCode
from fedgate.common.terms import SiteTerms

__all__ = ["PREEMPT_GRACE_ENV", "SHUTDOWN_MESSAGE", "SiteRuntime"]  # PREEMPT_GRACE_ENV: callers import it here

log = logging.getLogger(__name__)

SHUTDOWN_MESSAGE = "the site agent is shutting down"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SiteRuntime:
    """Everything the agent does at its site, driven by commands and by jobs ending."""

    def __init__(
        self,
        config: AgentConfig,
        backend: Backend,
        journal: UpdateJournal,
        *,
        clock: Callable[[], datetime] = _utc_now,
        signer: ReceiptSigner | None = None,
    ) -> None:
        self.site = config.site
        self._signer = signer
        self._grace_s = config.cancel_grace_s
        self._policy = config.policy
        self._backend = backend
        self._journal = journal
        self._clock = clock
        self._pools = {p.accelerator_class: DevicePool(p) for p in backend.pools(config.pools)}
        self.reservations = SiteReservations(self.site, config.policy, {c: p.spec for c, p in self._pools.items()})
        self._attempts = AttemptTable()
        self._last_sequence = journal.last_sequence()
        self._draining = False
        self._closing = False
        self._listeners: list[Callable[[], None]] = []
        self._gang_holds = GangHolds(self._pools, config.policy, clock)
        self._supervisor = AttemptSupervisor(backend, grace_s=config.cancel_grace_s, on_end=self._ended)
        self.capacity_version = 0
        self.welcomes = 0
        """Streams the gateway welcomed since start: the first and every reconnect (metrics)."""
        self.ended: Counter[tuple[str, str]] = Counter()
        """Attempts that ended here since start, by accelerator class and final state (metrics)."""
        """Bumped whenever free capacity, an offer (or drain state) changes, so senders know to report."""
        self._offers = self._current_offers()

    # -- what the transport reads ------------------------------------------------------------------

    @property
    def backend_name(self) -> str:
        return self._backend.name

    @property
    def draining(self) -> bool:
        return self._draining

    def resume_cursor(self) -> int:
        return self._journal.cursor()

    def running(self) -> list[RunningJob]:
        """The live attempts, with their state."""
        return [RunningJob(a.launch.job_id, a.launch.epoch, a.state) for a in self._attempts.all_live()]

    def unsettled(self) -> list[RunningJob]:
        """What Hello lists (site.proto, rule 13): the live attempts, then the ended ones whose final update the
        gateway has not acknowledged yet, with that final state (so the gateway waits for it, not declares the
        attempt lost)."""
        listed = {(r.job_id, r.epoch): r for r in self.running()}
        for update in self._journal.pending():
            key = (update.job_id, update.epoch)
            if key not in listed and update.state != JobState.RUNNING:
                listed[key] = RunningJob(update.job_id, update.epoch, update.state)
        return list(listed.values())

    def capacity(self) -> list[PoolCapacity]:
        """Each pool as it is now: the offer the centre's policy sets at this instant, and what of it is free."""
        return pool_capacities(self._policy, self._pools.values(), self._clock(), draining=self._draining)

    def cards_in_use(self) -> dict[str, int]:
        """Cards held by federated jobs (launched or gang-held), by accelerator class."""
        return {cls: pool.used_count for cls, pool in self._pools.items()}

    def terms(self) -> SiteTerms:
        """What the centre accepts, reported with every capacity report."""
        return self._policy.terms

    def refresh_offers(self) -> float | None:
        """Recompute the offers for now; when one changed (a window opened or closed), bump
        `capacity_version` so the sender reports at once. Returns the seconds until the offers may change
        next (None: never), so the sender can wake then instead of waiting for its next periodic report."""
        offers = self._current_offers()
        if offers != self._offers:
            self._offers = offers
            log.info("offers now %s", ", ".join(f"{cls} {n}" for cls, n in offers.items()))
            self._capacity_changed()
        if self._gang_holds.expire():  # gang holds nobody committed or aborted in time
            self._capacity_changed()
        return seconds_until_change(self._policy, self._clock(), self._gang_holds.next_expiry())

    def unacknowledged_updates(self, after: int = 0) -> list[JobUpdate]:
        """Updates the gateway has not acknowledged, with sequence > `after`, oldest first."""
        return self._journal.pending(after)

    def attempt(self, job_id: str, epoch: int) -> Attempt | None:
        """The attempt for exactly this job and epoch, live or recently ended, for reading its output."""
        return self._attempts.find(job_id, epoch)

    async def read_output(self, handle: JobHandle, offset: int, limit: int) -> bytes:
        """Up to `limit` bytes of an attempt's output from `offset` (the backend's `read_output`)."""
        return await self._backend.read_output(handle, offset, limit)

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after every new update or capacity change. Returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # -- what the transport tells ------------------------------------------------------------------

    def accept_welcome(self, last_update_sequence: int) -> None:
        """The gateway's cursor for this site: number new updates after it. Journaled updates at or below it are
        not dropped here but sent again: the gateway acks a true replay and refuses, as SEQUENCE_REUSED, one
        our journal numbered again after going back in time (which is then renumbered above the cursor)."""
        self._last_sequence = max(self._last_sequence, last_update_sequence)
        self.welcomes += 1

    def accept_lease(self, lease_s: float) -> None:
        """The gateway's site lease (Welcome). A backend whose attempts would run on without the agent (`local`)
        fences them within it (`set_lease`); engines that keep jobs do not: the gateway cancels on reconnect
        whatever it replaced meanwhile."""
        set_lease = getattr(self._backend, "set_lease", None)
        if set_lease is not None and lease_s > 0:
            set_lease(lease_s)

    def mark_processed(self, sequence: int) -> None:
        """A gateway message was handled; a reconnect resumes after the highest such sequence."""
        self._journal.advance_cursor(sequence)

    async def handle(self, command: GatewayCommand) -> ReserveReply | None:
        """Carry out one gateway command. Returns a reply to send, if the command has one."""
        match command:
            case Launch():
                await self.launch(command)
            case Cancel():
                self.cancel(command)
            case Preempt():
                self.preempt(command)
            case Reserve() if command.start is not None and command.end is not None:  # an advance reservation
                return self.reservations.reserve(command, self._clock())
            case Abort() if is_advance_reservation(command.reservation_id):
                self.reservations.release(command.reservation_id, command.reason)
            case Reserve():  # a gang part: hold the devices until Commit + Launch, Abort or timeout
                reply = self._gang_holds.reserve(command, self._draining)
                self._capacity_changed()
                return reply
            case Commit():
                self._gang_holds.commit(command.reservation_id)
            case Abort():
                if self._gang_holds.abort(command.reservation_id, command.reason):
                    self._capacity_changed()
            case Drain():
                self.drain(command.draining)
            case UpdatesAcknowledged():
                self._journal.acknowledge(command.sequence)
                self._notify()
            case UpdateRejected():
                self._update_rejected(command)
        return None

    def _update_rejected(self, command: UpdateRejected) -> None:
        """Retrying cannot help (the gateway says the message changed nothing), so the update is dropped; an end
        refused for its receipt goes again without it (`agents.core.usage`)."""
        log.warning("gateway refused update %d: %s (%s)", command.update_sequence, command.message, command.reason)
        if command.update_sequence:
            refused = next((u for u in self._journal.pending() if u.sequence == command.update_sequence), None)
            self._journal.discard(command.update_sequence)
            if refused is not None and command.reason == ReasonCode.SEQUENCE_REUSED:
                # Our numbering went back (a restored journal): the same word again, above the gateway's cursor.
                self._last_sequence = max(self._last_sequence, command.last_update_sequence) + 1
                self._journal.append(replace(refused, sequence=self._last_sequence))
            elif refused is not None and needs_resend_without_receipt(refused, command.reason):
                self._last_sequence += 1
                self._journal.append(without_receipt(refused, self._last_sequence))
            self._notify()

    # -- commands ----------------------------------------------------------------------------------

    async def launch(self, command: Launch) -> None:
        """Start an attempt, idempotently by (job_id, epoch); refusals become FAILED updates."""
        known = self._attempts.find(command.job_id, command.epoch)
        if known is not None:
            log.info("job %s epoch %d: launch repeated, re-reporting %s", *known.key, known.state.value)
            self._report(known)
            return
        highest = self._attempts.highest_epoch(command.job_id)
        if highest is not None and command.epoch < highest:
            log.warning("job %s: launch of stale epoch %d ignored", command.job_id, command.epoch)
            return
        self._attempts.note_epoch(command.job_id, command.epoch)
        self._gang_holds.take(command.job_id, command.epoch)  # a gang part's hold becomes this launch's devices
        for older in self._attempts.live_of_job(command.job_id):
            # A job never runs under two live attempts: the newer lease wins.
            self._supervisor.stop(older, JobState.CANCELLED, f"superseded by epoch {command.epoch}")
        try:
            pool = admit(self.site, command, self._pools, self._policy, self._clock, draining=self._draining)
            devices = pool.allocate(command.cards, command.nodes)
        except LaunchRefused as exc:
            # The site's own reasons (draining, its terms, full, no such pool): hand the lease back, the job
            # is not at fault.
            self._refuse(command, exc.message, lease_returned=True)
            return
        try:
            handle = await self._backend.launch(self._spec(command, pool, devices))
        except BackendError as exc:
            pool.release(devices)
            self._refuse(command, exc.message)
            return
        except Exception as exc:  # a backend bug must fail this one job, never the agent's stream
            log.exception("job %s epoch %d: backend crashed while launching", command.job_id, command.epoch)
            pool.release(devices)
            self._refuse(command, f"the site's backend could not start the job ({type(exc).__name__})")
            return
        attempt = Attempt(launch=command, devices=devices, handle=handle, started_at=self._clock())
        record = getattr(self._backend, "journal_record", None)
        started = StartedAttempt(
            command, devices, attempt.started_at or self._clock(), record(handle) if record else {}
        )
        self._journal.record_started(started)
        self._attempts.add_live(attempt)
        self._report(attempt)
        self._capacity_changed()
        self._supervisor.watch(attempt)
        if self._closing:  # shutdown began while the backend was starting it
            self._supervisor.stop(attempt, JobState.PREEMPTED, SHUTDOWN_MESSAGE)

    def cancel(self, command: Cancel) -> None:
        if self._gang_holds.release_job(command.job_id, command.epoch):
            self._capacity_changed()
        attempt = self._attempts.live(command.job_id, command.epoch)
        if attempt is None:
            log.info("job %s epoch %d: cancel ignored, not running here", command.job_id, command.epoch)
            return
        message = f"cancelled: {command.reason}" if command.reason else "cancelled by the gateway"
        self._supervisor.stop(attempt, JobState.CANCELLED, message)

    def preempt(self, command: Preempt) -> None:
        attempt = self._attempts.live(command.job_id, command.epoch)
        if attempt is None:
            log.info("job %s epoch %d: preempt ignored, not running here", command.job_id, command.epoch)
            return
        grace = command.grace_s if command.grace_s > 0 else None
        self._supervisor.stop(attempt, JobState.PREEMPTED, "preempted by the gateway", grace)

    def drain(self, draining: bool) -> None:
        if draining != self._draining:
            log.info("site is %s", "draining: launches are refused" if draining else "accepting launches")
        self._draining = draining
        self._capacity_changed()

    async def restore(self) -> None:
        """Re-attach the attempts a previous run of this agent started and did not see end, through
        `backend.adopt`; an attempt the backend no longer knows is reported LOST (the gateway queues it again),
        never silently forgotten. Call once, before the first connection and before any launch, so Hello lists
        the re-attached ones and their devices are taken before anything new is placed on them."""
        journaled = self._journal.started()
        async for attempt in reattach(journaled, self._pools, self._backend, self._spec):
            self._attempts.note_epoch(*attempt.key)
            if attempt.handle is None:
                self._ended(attempt)  # lost: reported LOST
                continue
            self._attempts.add_live(attempt)
            self._supervisor.watch(attempt)
        sweep = getattr(self._backend, "sweep", None)
        if sweep is not None:  # attempts started but never journaled hold devices nobody counts: end them
            try:
                await sweep({entry.key for entry in journaled})
            except Exception:
                log.exception("the backend could not look for attempts it started but never journaled")
        self._capacity_changed()

    async def shutdown(self, timeout_s: float) -> None:
        """Refuse new launches; stop every attempt and wait (bounded) until their final updates exist, unless
        the backend's engine keeps jobs without the agent (`keeps_jobs`): those keep running, journaled, and
        the next start re-attaches them."""
        self._closing = True
        self._draining = True
        self._capacity_changed()  # tell the gateway first: nothing is free here any more
        if getattr(self._backend, "keeps_jobs", False):
            log.info("leaving %d job(s) running on %s", len(self._attempts.all_live()), self.backend_name)
            await self._supervisor.abandon()
            return
        grace = min(self._grace_s, max(timeout_s - 1.0, 0.0))
        for attempt in self._attempts.all_live():
            self._supervisor.stop(attempt, JobState.PREEMPTED, SHUTDOWN_MESSAGE, grace)
        await self._supervisor.wait_all(timeout_s)

    # -- internals ---------------------------------------------------------------------------------

    def _current_offers(self) -> dict[str, int]:
        return current_offers(self._policy, self._pools, self._clock())

    def _spec(self, command: Launch, pool: DevicePool, devices: tuple[int, ...]) -> LaunchSpec:
        return launch_spec(self.site, command, pool, devices, grace_s=self._grace_s)

    def _refuse(self, command: Launch, message: str, *, lease_returned: bool = False) -> None:
        log.warning("job %s epoch %d: refused: %s", command.job_id, command.epoch, message)
        attempt = Attempt(launch=command, state=JobState.FAILED, message=message, lease_returned=lease_returned)
        self._attempts.add_ended(attempt)
        self._report(attempt)

    def _ended(self, attempt: Attempt) -> None:
        pool = self._pools.get(attempt.launch.accelerator_class)
        if pool is not None:
            pool.release(attempt.devices)
        receipt = sign_usage(self._signer, self.site, attempt, self._clock)
        if receipt is not None:
            attempt.receipt = receipt
        self._attempts.add_ended(attempt)
        self.ended[attempt.launch.accelerator_class, attempt.state.value] += 1
        self._report(attempt)
        self._journal.record_ended(*attempt.key)
        self._capacity_changed()

    def _report(self, attempt: Attempt) -> None:
        self._last_sequence += 1
        update = update_of(attempt, self._last_sequence, self._clock())
        self._journal.append(update)
        where = ",".join(map(str, attempt.devices)) or "none"
        detail = f": {update.message}" if update.message else ""
        log.info("job %s epoch %d: %s on devices %s%s", *attempt.key, update.state.value, where, detail)
        self._notify()

    def _capacity_changed(self) -> None:
        self.capacity_version += 1
        self._notify()

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()
