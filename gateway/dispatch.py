"""The site side of the protocol: hello, capacity, job updates, and reconciliation on reconnect.

Owns: the checks a site's word must pass before it changes anything (the job is leased to this site, the
epoch is current, the update is new, the transition is legal) and the resend of launches a reconnecting
agent may have missed. A refused update changes nothing in the store. Identity is already verified by the
transport layer: `site` here is the name from the caller's certificate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.errors import GatewayError, PermissionDenied, StaleEpoch
from gateway.federation import Federation
from gateway.model import Job, JobState, Placement, Pool, Reason, SiteTerms, can_transition
from gateway.sites import CancelCommand, Outbox


@dataclass(frozen=True)
class SiteUpdate:
    job_id: str
    epoch: int
    state: JobState
    sequence: int
    time: datetime
    exit_code: int = 0
    message: str = ""
    device_indices: tuple[int, ...] = ()
    lease_returned: bool = False


@dataclass(frozen=True)
class RunningAttempt:
    job_id: str
    epoch: int
    state: JobState


@dataclass(frozen=True)
class Session:
    site: str
    connection_id: int
    outbox: Outbox
    last_update_sequence: int


class Dispatcher:
    def __init__(self, federation: Federation) -> None:
        self.federation = federation
        self._cursors: dict[str, int] = {}

    def hello(self, site: str, agent_version: str, running: list[RunningAttempt]) -> Session:
        fed = self.federation
        connection_id, outbox = fed.registry.connect(site, agent_version, fed.clock())
        cursor = self._cursors.get(site)
        if cursor is None:
            cursor = self._cursors[site] = fed.store.site_cursor(site)
        self._reconcile(site, running)
        fed.reservations.site_connected(site)
        return Session(site, connection_id, outbox, cursor)

    def _reconcile(self, site: str, running: list[RunningAttempt]) -> None:
        """The gateway's view wins: stale or unknown attempts are cancelled, missed launches resent."""
        fed = self.federation
        reported = {(r.job_id, r.epoch) for r in running}
        for attempt in running:
            job = fed.active.get(attempt.job_id)
            if job is None or job.epoch != attempt.epoch or site not in job.sites:
                fed.registry.send(site, CancelCommand(attempt.job_id, attempt.epoch, "not leased to this site"))
        for job in list(fed.active.values()):
            if job.state == JobState.DISPATCHED and site in job.sites and (job.job_id, job.epoch) not in reported:
                placement = next(p for p in job.placements if p.site == site)
                self._resend_launch(site, job.job_id, placement)

    def _resend_launch(self, site: str, job_id: str, placement: Placement) -> None:
        fed = self.federation
        command = fed.launch_command(fed.active[job_id], placement)
        if command is not None:
            fed.registry.send(site, command)

    def capacity(self, site: str, pools: list[Pool], full: bool, terms: SiteTerms | None = None) -> None:
        fed = self.federation
        fed.registry.report(site, pools, full, fed.clock(), terms)
        fed.capacity_changed()

    def update(self, site: str, update: SiteUpdate) -> None:
        """Apply one job update from `site`. Raises (and changes nothing) when the site may not say this.

        Replays of an update already applied are accepted silently, so that an agent's journal drains.
        """
        fed = self.federation
        fed.registry.touch(site, fed.clock())
        if update.sequence <= self._cursors.get(site, 0):
            return
        job = fed.active.get(update.job_id) or fed.store.get_job(update.job_id)
        if job is None or site not in job.sites:
            raise PermissionDenied(f"job {update.job_id} is not leased to site {site}", reason="JOB_NOT_LEASED_TO_SITE")
        if update.epoch != job.epoch:
            raise StaleEpoch(
                f"update for job {job.job_id} carries epoch {update.epoch}; the current lease is epoch {job.epoch}"
            )
        cursor = (site, update.sequence)
        if job.state == update.state or job.state.terminal:
            # Nothing new (a replay, or the gateway already ended the job, e.g. a user cancel).
            self._cursors[site] = update.sequence
            return
        if update.lease_returned:
            self._return_lease(site, job, update)
            return
        if not can_transition(job.state, update.state):
            raise GatewayError(
                f"job {job.job_id} cannot go from {job.state.value} to {update.state.value}",
                reason="ILLEGAL_TRANSITION",
            )
        changes: dict[str, object] = {}
        if update.state == JobState.RUNNING:
            changes["start_time"] = update.time
            changes["placements"] = tuple(
                Placement(p.site, p.accelerator_class, p.cards, update.device_indices) if p.site == site else p
                for p in job.placements
            )
        if update.state.terminal:
            changes["exit_code"] = update.exit_code
        message = update.message or f"{update.state.value.lower()} at {site}"
        updated = fed.transition(job, update.state, message, site=site, cursor=cursor, **changes)
        self._cursors[site] = update.sequence
        if update.state in {JobState.PREEMPTED, JobState.LOST}:
            fed.requeue(updated, message)

    def _return_lease(self, site: str, job: Job, update: SiteUpdate) -> None:
        """The site declined to start the attempt: queue the job again; the attempt does not count."""
        if job.state != JobState.DISPATCHED:
            raise GatewayError(
                f"job {job.job_id} is {job.state.value}; only a dispatched job's lease can be returned",
                reason="ILLEGAL_TRANSITION",
            )
        why = update.message or "no reason given"
        self.federation.transition(
            job,
            JobState.QUEUED,
            f"{site} returned the lease: {why}",
            site=site,
            cursor=(site, update.sequence),
            placements=(),
            attempt=job.attempt - 1,
            reasons=(Reason("site", "LEASE_RETURNED", f"{site} declined to start it: {why}", site),),
        )
        self._cursors[site] = update.sequence

    def goodbye(self, site: str, connection_id: int) -> None:
        self.federation.registry.disconnect(site, connection_id)
