"""Two-phase gang holds: hold a gang's parts one site at a time (the contract's Reserve), then Commit and Launch
all, or Abort all.

Owns: the gangs being held (job, epoch, parts, which part is being asked, until when), their hold ids
(`gang:<job>:<epoch>:<part>`, sent in the contract's `reservation_id` field), timeouts, and the backoff that
keeps a site that refused or timed out from being nominated again for the same job for a while (doubling with
each failure there, from seconds to a minute). The protocol, per gang:
  QUEUED -> RESERVING (durable; the parts count as leased, so nothing else takes their cards)
  Reserve part 0; on accept, Reserve part 1; ... (incrementally, never all at once), each with a timeout;
  all accepted: Commit each, DISPATCHED with all parts (one epoch), Launch each (the Launch consumes the hold);
  any refusal, timeout or disconnect: Abort every part asked so far, back to QUEUED with the site's reason.
A refusal carries the site's free cards of the class, which lowers (never raises) the registry's view of the
site until its next capacity report. A gateway restart forgets the gangs being reserved: `requeue_interrupted`
puts them back in the queue, and the agents' holds expire by themselves. It does not plan (`gateway.gangs.plan`) nor
speak gRPC: commands go out through the site registry, and replies come in through `gateway.sites.dispatcher`.
It sees the rest of the gateway through two narrow interfaces: `GangJobs` (the job book) and `GangLaunches`
(the launcher).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from gateway.jobs.model import Job, JobState, Placement, Reason
from gateway.placement.nodes import placed_nodes
from gateway.sites.registry import AbortCommand, CommitCommand, LaunchCommand, ReserveCommand, SiteRegistry

PREFIX = "gang:"
RESERVE_TIMEOUT = timedelta(seconds=5)
"""How long a site has to answer one Reserve, and how long it holds the cards without a Commit or Abort."""
SITE_BACKOFF = timedelta(seconds=2)
"""How long a site that refused (or did not answer) is first not nominated again for the same job; each
further failure at that site doubles it, up to `SITE_BACKOFF_CAP`. Short at first because most refusals are
transient (a hold a dead leader left, a report a moment old, a slow answer on a loaded site), and the refusal's
`free` already keeps the next plan off cards the site lacks; growing, so that a site that keeps refusing what
its reports offer is asked less and less often."""
SITE_BACKOFF_CAP = timedelta(seconds=60)
_PLAN_CODES = frozenset({"GANG_PLANNED", "GANG_LINKS", "GANG_THIN_LINK"})
"""The planner's reasons a launched gang keeps (why these sites), before GANG_RESERVED."""


class GangJobs(Protocol):
    """What the coordinator needs of the job book (a fake in tests): the active jobs, and state changes."""

    @property
    def active(self) -> Mapping[str, Job]: ...  # pragma: no cover

    def transition(
        self,
        job: Job,
        state: JobState,
        message: str,
        *,
        site: str = "",
        cursor: tuple[str, int] | None = None,
        **changes: object,
    ) -> Job: ...  # pragma: no cover


class GangLaunches(Protocol):
    """What the coordinator needs of the launcher: the run each part's site is told."""

    def launch_command(self, job: Job, placement: Placement) -> LaunchCommand | None: ...  # pragma: no cover


@dataclass
class PendingGang:
    """One gang being reserved: parts[:asking] are held; parts[asking] has been asked until `deadline`."""

    job_id: str
    epoch: int
    parts: tuple[Placement, ...]
    asking: int
    deadline: datetime

    def hold_id(self, index: int) -> str:
        return f"{PREFIX}{self.job_id}:{self.epoch}:{index}"


def parse_hold_id(reservation_id: str) -> tuple[str, int, int] | None:
    """(job id, epoch, part) of a gang reservation id; None when it is not one."""
    if not reservation_id.startswith(PREFIX):
        return None
    job_id, _, rest = reservation_id[len(PREFIX) :].partition(":")
    epoch, _, index = rest.partition(":")
    if not job_id or not epoch.isdigit() or not index.isdigit():
        return None
    return job_id, int(epoch), int(index)


class GangCoordinator:
    def __init__(
        self,
        jobs: GangJobs,
        launches: GangLaunches,
        registry: SiteRegistry,
        clock: Callable[[], datetime],
        timeout: timedelta = RESERVE_TIMEOUT,
        backoff: timedelta = SITE_BACKOFF,
        backoff_cap: timedelta = SITE_BACKOFF_CAP,
    ) -> None:
        self.jobs = jobs
        self.launches = launches
        self.registry = registry
        self.clock = clock
        self.timeout = timeout
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self._pending: dict[str, PendingGang] = {}
        self._backing_off: dict[str, dict[str, datetime]] = {}  # job -> site -> until
        self._failures: dict[str, dict[str, int]] = {}  # job -> site -> failed asks so far (kept while queued)
        self._unasked: list[str] = []  # gangs started whose first Reserve waits for `ask_started`
        self.backoff_lapsed = False
        """Set by `tick` when a site's backoff for a job ended: the scheduler looks at every waiting job again
        (and clears it), as it does when a hold lapses, since only time changed and no wake-up says so."""

    # ---- what the scheduler asks ------------------------------------------------------------------------------
    def backing_off(self, job_id: str) -> frozenset[str]:
        """Sites not to nominate for this job now."""
        now = self.clock()
        sites = self._backing_off.get(job_id, {})
        for site in [s for s, until in sites.items() if until <= now]:
            del sites[site]
        if not sites:
            self._backing_off.pop(job_id, None)
        return frozenset(sites)

    def start(self, job: Job, parts: tuple[Placement, ...], reasons: tuple[Reason, ...], ask: bool = True) -> Job:
        """Move a queued job to RESERVING on `parts` (durable) and ask the first part's site; with `ask` False,
        only once `ask_started` is called: a scheduling cycle starts gangs as it plans, but sends its launches at
        its end, and a site must see those launches before the Reserve, or it holds a gang part on cards (a
        whole node) the same cycle gave a launch."""
        epoch = job.epoch + 1
        parts = tuple(p if p.nodes else replace(p, nodes=self._nodes(p)) for p in parts)  # the planner's, if any
        where = ", ".join(f"{p.cards} x {p.accelerator_class} on {p.site}" for p in parts)
        message = f"reserving a gang of {len(parts)} sites: {where}"
        job = self.jobs.transition(job, JobState.RESERVING, message, placements=parts, epoch=epoch, reasons=reasons)
        gang = PendingGang(job.job_id, epoch, parts, 0, self.clock() + self.timeout)
        self._pending[job.job_id] = gang
        if ask:
            self._ask(gang, job)
        else:
            self._unasked.append(job.job_id)
        return job

    def ask_started(self) -> None:
        """Send the first Reserve of every gang started with `ask` False and still waiting for it."""
        unasked, self._unasked = self._unasked, []
        for job_id in unasked:
            gang, job = self._pending.get(job_id), self.jobs.active.get(job_id)
            if gang is None or job is None or job.state != JobState.RESERVING or job.epoch != gang.epoch:
                continue  # released meanwhile (tick, a cancel): nothing to ask
            if gang.asking == 0:
                self._ask(gang, job)

    def _nodes(self, part: Placement) -> int:
        """The nodes a part takes when the planner left it to its cards (a gang of no stated shape)."""
        return placed_nodes(part.cards, 0, self.registry.cards_per_node(part.site, part.accelerator_class))

    def requeue_interrupted(self) -> int:
        """After a restart: every job found RESERVING goes back to the queue. Returns how many."""
        stuck = [j for j in self.jobs.active.values() if j.state == JobState.RESERVING]
        for job in stuck:
            reason = Reason("site", "RESERVE_INTERRUPTED", "the gateway restarted while reserving the gang")
            self.jobs.transition(job, JobState.QUEUED, reason.message, placements=(), reasons=(reason,))
        return len(stuck)

    # ---- what the sites say -----------------------------------------------------------------------------------
    def reply(self, site: str, reservation_id: str, accepted: bool, reason: str, free: int | None = None) -> None:
        """A site's answer to one Reserve. A late or unknown acceptance is aborted so its hold is released. A
        refusal's `free` (the site's free cards of the part's class when it replied) lowers the registry's view
        of the site, so that the next plan does not count on cards it no longer has; it never raises it."""
        parsed = parse_hold_id(reservation_id)
        gang = self._pending.get(parsed[0]) if parsed else None
        if gang is None or parsed is None or (gang.epoch, gang.asking) != parsed[1:] or self._asked(gang) != site:
            if accepted:
                self.registry.send(site, AbortCommand(reservation_id, "no longer wanted"))
            return
        job = self.jobs.active.get(gang.job_id)
        if job is None or job.state != JobState.RESERVING or job.epoch != gang.epoch:
            self._release(gang, "the job is no longer reserving")
            return
        if not accepted:
            if free is not None:
                self.registry.lower_free(site, gang.parts[gang.asking].accelerator_class, free)
            self._fail(gang, job, site, "SITE_REFUSED_RESERVE", f"{site} refused: {reason or 'no reason given'}")
            return
        gang.asking += 1
        if gang.asking < len(gang.parts):
            self._ask(gang, job)
        else:
            self._commit(gang, job)

    def site_lost(self, site: str) -> None:
        """A site's stream ended: every gang being reserved with a part there fails (counted as a refusal)."""
        for gang in list(self._pending.values()):
            if any(p.site == site for p in gang.parts[: gang.asking + 1]):
                job = self.jobs.active.get(gang.job_id)
                if job is None or job.state != JobState.RESERVING:
                    self._release(gang, "the job is no longer reserving")
                    continue
                self._fail(gang, job, site, "SITE_DISCONNECTED", f"{site} disconnected while reserving")

    def tick(self) -> None:
        """Fail the gangs whose asked site has not answered in time; drop those whose job moved on; end the
        backoffs whose time is up; forget the failures of jobs that ended."""
        self.ask_started()  # a cycle that raised before its end left them: ask now, late rather than never
        now = self.clock()
        for job_id in [j for j in self._failures if j not in self.jobs.active]:  # ended: nothing to back off
            del self._failures[job_id]
            self._backing_off.pop(job_id, None)
        for job_id, sites in list(self._backing_off.items()):  # a lapse changes only time: tell the queue
            for site in [s for s, until in sites.items() if until <= now]:
                del sites[site]
                self.backoff_lapsed = True
            if not sites:
                del self._backing_off[job_id]
        for gang in list(self._pending.values()):
            job = self.jobs.active.get(gang.job_id)
            if job is None or job.state != JobState.RESERVING or job.epoch != gang.epoch:
                self._release(gang, "the job is no longer reserving")
            elif gang.deadline <= now:
                site = self._asked(gang)
                seconds = f"{self.timeout.total_seconds():g}"
                self._fail(gang, job, site, "RESERVE_TIMEOUT", f"{site} did not answer within {seconds} s")

    # ---- internals --------------------------------------------------------------------------------------------
    @staticmethod
    def _asked(gang: PendingGang) -> str:
        return gang.parts[gang.asking].site

    def _ask(self, gang: PendingGang, job: Job) -> None:
        part = gang.parts[gang.asking]
        gang.deadline = self.clock() + self.timeout
        command = self.launches.launch_command(job, part)
        reserve = ReserveCommand(
            gang.hold_id(gang.asking),
            job.job_id,
            part.accelerator_class,
            part.cards,
            self.timeout,
            job.spec.tenant,
            job.spec.project,
            command.run if command is not None else None,
            gang.epoch,
            part.nodes,
        )
        if not self.registry.send(part.site, reserve):
            self._fail(gang, job, part.site, "SITE_DISCONNECTED", f"{part.site} is not connected")

    def _commit(self, gang: PendingGang, job: Job) -> None:
        del self._pending[gang.job_id]
        self._failures.pop(gang.job_id, None)
        for index, part in enumerate(gang.parts):
            self.registry.send(part.site, CommitCommand(gang.hold_id(index)))
        where = ", ".join(p.site for p in gang.parts)
        reason = Reason("capacity", "GANG_RESERVED", f"every part of the gang is held ({where}); launching")
        planned = tuple(r for r in job.reasons if r.code in _PLAN_CODES)  # why these sites, for `job explain`
        job = self.jobs.transition(
            job, JobState.DISPATCHED, reason.message, site=where, attempt=job.attempt + 1, reasons=(*planned, reason)
        )
        for part in gang.parts:
            command = self.launches.launch_command(job, part)
            if command is not None:  # admission guarantees a run for every admitted class
                self.registry.send(part.site, command)

    def _release(self, gang: PendingGang, why: str) -> None:
        """Abort every part asked so far (held, or perhaps held: the asked one may answer late)."""
        self._pending.pop(gang.job_id, None)
        for index, part in enumerate(gang.parts[: gang.asking + 1]):
            self.registry.send(part.site, AbortCommand(gang.hold_id(index), why))

    def _fail(self, gang: PendingGang, job: Job, site: str, code: str, message: str) -> None:
        self._release(gang, message)
        failures = self._failures.setdefault(gang.job_id, {})
        failures[site] = failures.get(site, 0) + 1
        wait = min(self.backoff * 2 ** (failures[site] - 1), self.backoff_cap)
        self._backing_off.setdefault(gang.job_id, {})[site] = self.clock() + wait
        reason = Reason("site", code, message, site)
        kept = tuple(r for r in job.reasons if r.stage == "policy")
        text = f"gang not reserved: {message}; every hold released"
        self.jobs.transition(job, JobState.QUEUED, text, site=site, placements=(), reasons=(*kept, reason))
