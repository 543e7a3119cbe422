"""The what-if twin: a trace replayed through the gateway's own core on a virtual clock, with simulated sites.

Owns: the virtual clock, the event loop (a heap of timed events: attempts ending, gang holds lapsing, trace
submits and the scheduler's period; at each instant they are applied in that fixed order, then the core's
`Scheduler.schedule()` runs and the sites answer what it sent, again until nothing changes), the trace job's
spec (`job_spec`, shared with the agreement test's live run) and the outcome of every job.
Every decision is the gateway's own: the core is `gateway.app.compose.compose` over an in-memory store, the
policy file given (admission, quotas, priority classes, fair share and aging, backfill, preemption, gangs,
node shapes), and jobs enter by `JobService.create_job` under a principal of the job's tenant, so a job the
policy refuses is counted as rejected with the gateway's message. Nothing of a rule is copied here: the loop
only decides WHEN the core is asked, in the order of the gateway's scheduler loop (`Scheduler.run` calls
`schedule()`, whose first steps tick the reservation rounds and the gang coordinator).
Modes: federated (the sites as given), pooled (one site with every card, `gateway.simulate.engine.layout`) and
siloed (one twin per site, each fed only the jobs whose home it is: a centre on its own, with the same policy).
The simulated centres follow their `CentrePolicy`: the terms they report and enforce (`fedgate.common.terms`)
and their offer windows (`fedgate.common.offers`, the rule the agent offers by); each window's turn is an event.
Advance bookings are made with `Twin.book` through the gateway's reservation book (a trace's format has none);
the centres confirm them by the agent's rule, and each booking's start and end is an event.
The trace's data fields (`dataset_site`, `dataset_gb`) become datasets of the policy the run decides under
(`gateway.simulate.twindata`), one per distinct site and size, and each such job names its own, so the
gateway's placement weighs copying it (DATASET_TRANSFER) as it would a job's `dataset`.
Deliberately left out: the gateway's and the sites' latency, failures and site loss (so the gateway's site
lease check, `gateway.sites.liveness`, is not run: no simulated site ever falls silent); a dataset's copy takes
no time in the twin (placement weighs it; the job starts at once); a centre does not end an attempt at its
max runtime (`job_spec` asks for at most the gateway's 30 days; a longer trace job runs its recorded duration).
A preempted job starts again from the beginning.
Deterministic: the same inputs give the same outcomes (the core names jobs with `sequential_job_ids`: the
gateway's id shape and order, by creation time then creation order, with nothing random in them, since the
order of jobs created at one instant is the order of their ids). Bounded: when no event is left that could
free or add capacity (or only offer windows turn, for `IDLE_LIMIT` without a start), the jobs still waiting are
reported as never started.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.app.compose import Core, compose
from gateway.errors import ConfigError, GatewayError
from gateway.jobs.model import JobState, Resources
from gateway.jobs.service import sequential_job_ids
from gateway.policy.catalogue import Catalogue
from gateway.policy.holder import PolicyHolder
from gateway.reservations.model import Reservation, ReservationRequest
from gateway.simulate.centres import CentrePolicy
from gateway.simulate.engine import Mode, check_trace, layout
from gateway.simulate.simsites import SimSite
from gateway.simulate.sites import SiteSpec
from gateway.simulate.trace import TraceJob
from gateway.simulate.twindata import trace_datasets, with_datasets
from gateway.simulate.twinjobs import Start, TwinOutcome, TwinResult, default_scope, job_spec, submitter
from gateway.sites.registry import LaunchCommand
from gateway.store import open_store

EPOCH = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
"""Where the virtual clock starts (a Monday, 00:00 UTC): trace second 0."""
END, EXPIRE, OFFER, BOOKING, SUBMIT, TICK = 0, 1, 2, 3, 4, 5
"""Event kinds, in the order they are applied at one instant: cards freed first (attempts ending, holds
lapsing, offer windows turning, bookings starting or ending), then arrivals, then a cycle."""
IDLE_LIMIT = timedelta(days=8)
"""With only offer windows and the period left to come, the twin stops after this long without a start: every
weekly window pattern has then been seen, and a job that did not start in it never will."""
MAX_ROUNDS = 64
"""Schedule-and-answer rounds at one instant (each round either dispatches, or a site answers, or it stops)."""


class VirtualClock:
    """The twin's clock: it moves only when the event loop moves it."""

    def __init__(self, start: datetime = EPOCH) -> None:
        self.start = self.now = start

    def __call__(self) -> datetime:
        return self.now

    def seconds(self, at: datetime | None = None) -> float:
        return ((at or self.now) - self.start).total_seconds()


@dataclass(order=True)
class _Event:
    at: datetime
    kind: int
    seq: int
    site: str = field(compare=False, default="")
    key: str = field(compare=False, default="")  # job id (END, SUBMIT: trace index), reservation id (EXPIRE)
    epoch: int = field(compare=False, default=0)
    state: JobState = field(compare=False, default=JobState.SUCCEEDED)


class Twin:
    """One federation (or one silo) replaying trace jobs through the gateway's core."""

    def __init__(
        self,
        policy_path: Path,
        catalogue: Catalogue,
        sites: Sequence[SiteSpec],
        *,
        centres: dict[str, CentrePolicy] | None = None,
        tenant: str = "",
        project: str = "",
        period_s: float = 1.0,
        start: datetime = EPOCH,
    ) -> None:
        if not period_s > 0:
            raise ConfigError(f"the scheduler's period must be above 0 s, got {period_s:g}")
        for site in sites:
            for pool in site.pools:
                if pool.accelerator_class not in catalogue:
                    raise ConfigError(
                        f"site {site.name}: class {pool.accelerator_class!r} is not in the accelerator catalogue;"
                        " the twin runs the gateway's admission, which knows only catalogue classes"
                    )
        self.clock = VirtualClock(start)
        self.policy = PolicyHolder(policy_path, catalogue, start)
        self.tenant, self.project = default_scope(self.policy.policy, tenant, project)
        self.site_specs = tuple(sites)
        self.datasets: dict[tuple[str, float], str] = {}  # (dataset_site, dataset_gb) -> the policy's dataset
        store = open_store("sqlite://:memory:")
        self.core: Core = compose(store, self.policy, self.clock, job_ids=sequential_job_ids())
        self.period = timedelta(seconds=period_s)
        self._events: list[_Event] = []
        self._seq = 0
        self.total_cards = sum(p.cards for s in sites for p in s.pools)
        self.trace: dict[str, TraceJob] = {}  # gateway job id -> trace job
        self.ids: dict[str, str] = {}  # trace job id -> gateway job id
        self.rejected: dict[str, str] = {}  # trace job id -> the gateway's refusal
        self.starts: list[Start] = []
        self.cycles = 0
        self._tick_at: datetime | None = None
        self._progress = start  # the last instant something started, ended or arrived
        self.sites = {
            spec.name: SimSite(
                spec,
                (centres or {}).get(spec.name),
                self.core.dispatcher,
                self.clock,
                self._duration,
                self._schedule_end,
                self._schedule_expiry,
                self._started,
            )
            for spec in sorted(sites, key=lambda s: s.name)
        }

    def scope(self, job: TraceJob) -> tuple[str, str]:
        """The job's tenant and project: its own, else the run's (a tenant's first project when only the tenant
        is named). A tenant or project the policy lacks is left for admission to refuse."""
        if not job.tenant or job.tenant == self.tenant:
            return self.tenant, job.project or self.project
        if job.project or job.tenant not in self.policy.policy.tenants:
            return job.tenant, job.project
        return default_scope(self.policy.policy, job.tenant)

    # ---- events ----------------------------------------------------------------------------------------------
    def _push(self, at: datetime, kind: int, **what: object) -> None:
        self._seq += 1
        heapq.heappush(self._events, _Event(at, kind, self._seq, **what))  # type: ignore[arg-type]

    def _duration(self, job_id: str) -> float:
        return self.trace[job_id].duration_s

    def _schedule_end(self, at: datetime, site: str, job_id: str, epoch: int, state: JobState) -> None:
        self._push(at, END, site=site, key=job_id, epoch=epoch, state=state)

    def _schedule_expiry(self, at: datetime, site: str, rid: str) -> None:
        self._push(at, EXPIRE, site=site, key=rid)

    def _schedule_offer_change(self, site: SimSite) -> None:
        turn = site.policy.next_change(self.clock.now)
        if turn is not None:
            self._push(turn, OFFER, site=site.name)

    # ---- driving -----------------------------------------------------------------------------------------------
    async def submit(self, job: TraceJob) -> str:
        """Submit one trace job now through the gateway's job service; its gateway id ("" when refused)."""
        spec = job_spec(job, *self.scope(job), self.datasets.get((job.dataset_site, job.dataset_gb), ""))
        try:
            created = await self.core.jobs.create_job(submitter(self.policy.policy, spec.tenant, spec.project), spec)
        except GatewayError as exc:
            self.rejected[job.job_id] = exc.message
            return ""
        self.trace[created.job_id] = job
        self.ids[job.job_id] = created.job_id
        return created.job_id

    def book(
        self, tenant: str, project: str, accelerator_class: str, cards: int, start_s: float, end_s: float
    ) -> Reservation:
        """Book `cards` cards of a class for a project in [start_s, end_s) trace seconds, now, through the
        gateway's reservation book (as `fedgate reservation create` does); the sites confirm it as the twin runs."""
        request = ReservationRequest(
            tenant,
            project,
            Resources(accelerator_class, cards=cards),
            self.clock.start + timedelta(seconds=start_s),
            self.clock.start + timedelta(seconds=end_s),
        )
        booked = self.core.reservations.create(submitter(self.policy.policy, tenant, project), request)
        for at in (request.start, request.end):
            self._push(at, BOOKING)  # the cycle at that instant opens or closes its window (ReservationRounds)
        return booked

    def settle(self) -> int:
        """Schedule and let the sites answer, until nothing more happens at this instant. Returns dispatches."""
        dispatched = 0
        for _ in range(MAX_ROUNDS):
            self.cycles += 1
            placed = self.core.scheduler.schedule()
            dispatched += placed
            acted = False
            for site in self.sites.values():
                acted = site.answer() or acted
            if not placed and not acted:
                break
        return dispatched

    def _started(self, site: str, command: LaunchCommand) -> None:
        trace = self.trace.get(command.job_id)
        job_id = trace.job_id if trace is not None else command.job_id
        at = self.clock.seconds()
        self.starts.append(
            Start(at, job_id, site, command.accelerator_class, command.cards, command.epoch, command.nodes)
        )

    def add_datasets(self, jobs: Sequence[TraceJob]) -> None:
        """Before the first decision: the policy in force gains a dataset for each distinct data of `jobs`
        (swapped whole, as a reload swaps it), which those jobs then name."""
        datasets = {k: v for k, v in trace_datasets(jobs).items() if k not in self.datasets}
        if datasets:
            self.datasets.update(datasets)
            self.policy.policy = with_datasets(self.policy.path, self.datasets, self.site_specs)

    async def run(self, jobs: Sequence[TraceJob], horizon_s: float | None = None) -> TwinResult:
        """Replay `jobs` until every one has ended or can never start (or until `horizon_s` trace seconds)."""
        self.add_datasets(jobs)
        for index, job in enumerate(jobs):
            self._push(self.clock.start + timedelta(seconds=job.submit_s), SUBMIT, key=str(index))
        for site in self.sites.values():
            self._schedule_offer_change(site)
        horizon = self.clock.start + timedelta(seconds=horizon_s) if horizon_s is not None else None
        while self._events:
            at = self._events[0].at
            if horizon is not None and at > horizon:
                break
            if not self._more_to_come() and at - self._progress > IDLE_LIMIT:
                break
            self.clock.now = at
            while self._events and self._events[0].at == at:
                event = heapq.heappop(self._events)
                await self._apply(event, jobs)
            starts = len(self.starts)
            self.settle()
            if len(self.starts) > starts:
                self._progress = at
            self._keep_ticking()
        return self.result("federated", jobs)

    async def _apply(self, event: _Event, jobs: Sequence[TraceJob]) -> None:
        if event.kind == END:
            if self.sites[event.site].end(event.key, event.epoch, event.state):
                self._progress = event.at
        elif event.kind == EXPIRE:
            self.sites[event.site].expire(event.key)
        elif event.kind == OFFER:
            self.sites[event.site].report()  # the window turned: the agent reports its new offer at once
            self._schedule_offer_change(self.sites[event.site])
        elif event.kind == SUBMIT:
            self._progress = event.at
            await self.submit(jobs[int(event.key)])
        elif event.kind == TICK and self._tick_at == event.at:
            self._tick_at = None

    def _keep_ticking(self) -> None:
        """The scheduler's period, while it could matter: jobs wait and something is still to happen (an
        attempt or a hold to end, an arrival). With nothing left to come, no cycle can start a waiting job."""
        waiting = any(not j.state.terminal and j.state != JobState.RUNNING for j in self.core.book.active.values())
        pending = self._more_to_come()  # a window's turn runs a cycle by itself
        if waiting and pending and self._tick_at is None:
            self._tick_at = self.clock.now + self.period
            self._push(self._tick_at, TICK)

    def _more_to_come(self) -> bool:
        """Is an arrival, an end, a lapse or a booking's turn still to come (not only windows and the period)?"""
        return any(e.kind in (END, EXPIRE, BOOKING, SUBMIT) for e in self._events)

    # ---- results -----------------------------------------------------------------------------------------------
    def result(self, mode: str, jobs: Sequence[TraceJob]) -> TwinResult:
        first: dict[str, float] = {}
        classes: dict[str, str] = {}
        sites: dict[str, list[str]] = {}
        for start in self.starts:
            first.setdefault(start.job_id, start.at_s)
            classes.setdefault(start.job_id, start.accelerator_class)
            where = sites.setdefault(start.job_id, [])
            if start.site not in where:
                where.append(start.site)
        outcomes = tuple(
            replace(
                self._outcome(job, first.get(job.job_id), tuple(sites.get(job.job_id, ()))),
                accelerator_class=classes.get(job.job_id) or job.accelerator or "any",
            )
            for job in jobs
        )
        returned = tuple(f"{site.name}: {why}" for site in self.sites.values() for why in site.returned)
        return TwinResult(mode, outcomes, tuple(self.starts), self.total_cards, self.cycles, returned)

    def _outcome(self, trace: TraceJob, start_s: float | None, sites: tuple[str, ...]) -> TwinOutcome:
        tenant, project = self.scope(trace)
        common = (trace.job_id, tenant, project, trace.priority_class, trace.cards, trace.submit_s, trace.duration_s)
        if trace.job_id in self.rejected:
            return TwinOutcome(*common, None, None, (), JobState.REJECTED.value, self.rejected[trace.job_id])
        job_id = self.ids.get(trace.job_id)
        job = self.core.book.find(job_id) if job_id else None
        if job is None:  # not submitted before the horizon
            return TwinOutcome(*common, None, None, (), "NOT_SUBMITTED")
        preempted = max(0, len({s.epoch for s in self.starts if s.job_id == trace.job_id}) - 1)
        end_s = self.clock.seconds(job.end_time) if job.end_time is not None and job.state.terminal else None
        if start_s is None and not job.state.terminal:
            job = self.core.outlook.with_pending_reasons(job)  # why it waits, as `fedgate job explain` says
        reason = "; ".join(r.message for r in job.reasons[-2:])
        state = job.state.value if start_s is not None or job.state.terminal else "NEVER_STARTED"
        return TwinOutcome(*common, start_s, end_s, sites, state, reason if state != "SUCCEEDED" else "", preempted)


async def replay(
    policy_path: Path,
    catalogue: Catalogue,
    jobs: Sequence[TraceJob],
    sites: Sequence[SiteSpec],
    mode: Mode = "federated",
    *,
    centres: dict[str, CentrePolicy] | None = None,
    tenant: str = "",
    project: str = "",
    period_s: float = 1.0,
    horizon_s: float | None = None,
) -> TwinResult:
    """Replay `jobs` in one mode: federated and pooled as one twin, siloed as one twin per site (each with the
    jobs homed there), the outcomes put back in trace order."""
    check_trace(jobs, sites)
    if mode != "siloed":
        twin = Twin(
            policy_path,
            catalogue,
            layout(sites, mode),
            centres=centres,
            tenant=tenant,
            project=project,
            period_s=period_s,
        )
        result = await twin.run(jobs, horizon_s)
        return TwinResult(
            mode, result.outcomes, result.starts, result.total_cards, result.cycles, result.returned, class_cards(sites)
        )
    by_id: dict[str, TwinOutcome] = {}
    starts: list[Start] = []
    cycles = 0
    returned: list[str] = []
    for site in sorted(sites, key=lambda s: s.name):
        homed = [job for job in jobs if job.home_site == site.name]
        twin = Twin(policy_path, catalogue, (site,), centres=centres, tenant=tenant, project=project, period_s=period_s)
        result = await twin.run(homed, horizon_s)
        by_id.update((o.job_id, o) for o in result.outcomes)
        starts.extend(result.starts)
        cycles += result.cycles
        returned.extend(result.returned)
    starts.sort(key=lambda s: s.at_s)
    total = sum(p.cards for s in sites for p in s.pools)
    outcomes = tuple(by_id[job.job_id] for job in jobs)
    return TwinResult(mode, outcomes, tuple(starts), total, cycles, tuple(returned), class_cards(sites))


def class_cards(sites: Sequence[SiteSpec]) -> dict[str, int]:
    """The cards of each accelerator class over `sites`."""
    cards: dict[str, int] = {}
    for site in sites:
        for pool in site.pools:
            cards[pool.accelerator_class] = cards.get(pool.accelerator_class, 0) + pool.cards
    return cards


def replay_sync(*args: object, **kwargs: object) -> TwinResult:
    """`replay` on a fresh event loop (the CLI's entry)."""
    return asyncio.run(replay(*args, **kwargs))  # type: ignore[arg-type]
