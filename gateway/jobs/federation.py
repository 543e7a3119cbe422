"""The gateway's domain core: jobs from admission to the end, as the vendors and admins see them.

Owns: the in-memory view of active jobs over the durable store, every job state change (durable before it is
acknowledged or announced), and the vendor and admin operations. The scheduling cycle is mixed in from
`gateway.scheduler.cycle`. The site side of the protocol lives in `gateway.sites.dispatcher`, which calls
`transition` here.
It never speaks gRPC: the transport layer calls one method per RPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from datetime import UTC, datetime

from gateway.errors import AdmissionRejected, GatewayError, InvalidArgument, NotFound
from gateway.gangs.coordinator import GangCoordinator
from gateway.identity.principal import Principal, principal_from_uri
from gateway.jobs.admission import AdmissionDecision, admit
from gateway.jobs.model import ATTEMPT_ENDS, Job, JobEvent, JobSpec, JobState
from gateway.placement.place import Explanation
from gateway.policy import FederationPolicy
from gateway.policy.engine import evaluate
from gateway.policy.holder import PolicyHolder
from gateway.reservations.book import ReservationBook
from gateway.scheduler.cycle import Scheduling
from gateway.scheduler.earmarks import HoldBook
from gateway.sites.logs import LogRelay
from gateway.sites.model import SiteView
from gateway.sites.registry import CancelCommand, SiteRegistry
from gateway.store import JobPage, Store
from gateway.store.commit import GroupCommitter
from gateway.trust import access
from gateway.usage.model import UsageRow
from gateway.usage.receipts import SettledReceipt

Clock = Callable[[], datetime]
MAX_PAGE_SIZE = 500
MAX_LOST_ATTEMPTS = 3  # attempts a job may lose (site gone, agent lost track) before it is failed
_sequence = itertools.count()


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_job_id(now: datetime) -> str:
    """Time-sortable id: listing by id is listing by creation time."""
    millis = int(now.timestamp() * 1000)
    return f"job-{millis:011x}{next(_sequence) % 4096:03x}{secrets.token_hex(2)}"


class Federation(Scheduling):
    def __init__(self, store: Store, policy: PolicyHolder, clock: Clock = utc_now) -> None:
        from gateway.jobs.events import EventBus

        self.store = store
        self.policy = policy
        self.clock = clock
        self.commits = GroupCommitter(store)
        self.registry = SiteRegistry()
        self.logs = LogRelay(self.registry)  # job output from the sites to readers (access checked by get_job)
        self.bus = EventBus()
        self.wakeup = asyncio.Event()
        self.active: dict[str, Job] = {}
        # The scheduler's own books: queued job ids -> the classes that can serve them (computed once), the
        # ones queued since the last cycle, and whether capacity may have grown since the last full pass.
        self._queued: dict[str, tuple[str, ...]] = {}
        self._fresh: list[str] = []
        self._capacity_grew = True
        self._holding: dict[str, Job] = {}  # jobs holding cards at a site: what leases() adds up
        self._hours_cache: dict[str, tuple[datetime, dict[tuple[str, str], float]]] = {}
        self.reservations = ReservationBook(store, policy, self.registry, clock, self.capacity_changed)
        self.queue_holds = HoldBook()  # backfill and preemption earmarks between cycles
        for job in store.active_jobs():
            self._remember(job)
        self.gangs = GangCoordinator(self)
        self.gangs.requeue_interrupted()  # their holds at the sites expire by themselves

    def _remember(self, job: Job) -> None:
        """Keep the in-memory view of an active job, and the scheduler's queue, in step with its state."""
        if job.state.terminal:
            self.active.pop(job.job_id, None)
        else:
            self.active[job.job_id] = job
        if job.state == JobState.QUEUED:
            if job.job_id not in self._queued:
                self._queued[job.job_id] = self._admitted_classes(job.spec)
                self._fresh.append(job.job_id)
                self.wakeup.set()
        else:
            self._queued.pop(job.job_id, None)
        if job.state.holds_capacity:
            self._holding[job.job_id] = job
        elif self._holding.pop(job.job_id, None) is not None:
            self._hours_cache.clear()  # an attempt ended: its card-hours are now in the store
            self.capacity_changed()  # cards came free

    def _admitted_classes(self, spec: JobSpec) -> tuple[str, ...]:
        """The classes the policy in force lets this job use (accelerator access and class rules)."""
        return evaluate(self.policy.policy, self.policy.catalogue, spec, self.clock()).classes

    def _priority(self, spec: JobSpec) -> int:
        policy = self.policy.policy
        found = policy.priorities.get(spec.priority_class) if spec.priority_class else policy.default_priority
        return found.priority if found is not None else 0

    def reload_policy(self) -> tuple[FederationPolicy, bool]:
        """Load the policy file again; on success it is in force at once, on failure the old one stays."""
        policy, changed = self.policy.reload(self.clock())
        if changed:
            self.policy_changed()
        return policy, changed

    def policy_changed(self) -> None:
        """A new policy is in force: what each queued job may use is worked out again, every job looked at."""
        for job_id in self._queued:
            self._queued[job_id] = self._admitted_classes(self.active[job_id].spec)
        self.capacity_changed()

    def capacity_changed(self) -> None:
        """Something may have freed or added cards (a report, an end, a resumed site): look at every job."""
        self._capacity_grew = True
        self.wakeup.set()

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

    def transitions(
        self,
        moves: list[tuple[Job, JobState, str, str, tuple[str, int] | None, dict[str, object]]],
        receipts: Sequence[SettledReceipt] = (),
    ) -> list[Job]:
        """Several state changes made durable in one transaction (one fsync), together with the usage `receipts`
        they settle, then announced, in order."""
        now = self.clock()
        updated: list[Job] = []
        events: list[JobEvent] = []
        for job, state, message, site, _, changes in moves:
            if state.terminal or state in ATTEMPT_ENDS:
                changes.setdefault("end_time", now)
            new = job.evolve(state=state, update_time=now, **changes)
            updated.append(new)
            events.append(JobEvent(job.job_id, state, now, new.attempt, site, message))
        stored = self.store.save_transitions(
            [(job, event, move[4]) for job, event, move in zip(updated, events, moves, strict=True)], receipts
        )
        for job, event in zip(updated, stored, strict=True):
            self._remember(job)
            self.bus.publish(event, job)
        return updated

    def requeue(self, job: Job, message: str) -> Job:
        """After a preemption or a lost site, queue the job for a new attempt, unless it has lost too many.

        Only LOST attempts count against the job: a preemption is the federation's own choice (bounded by the
        no-ping-pong rules of `gateway.placement.preemption`), so it never uses up the job's attempts."""
        if job.state == JobState.LOST:
            lost = sum(1 for event in self.store.events(job.job_id) if event.state == JobState.LOST)
            if lost >= MAX_LOST_ATTEMPTS:
                return self.transition(job, JobState.FAILED, f"{message}; gave up after {lost} lost attempts")
        return self.transition(
            job,
            JobState.QUEUED,
            f"{message}; queued again for attempt {job.attempt + 1}",
            placements=(),
            start_time=None,  # the next attempt's usage starts when it runs, not when this one did
        )

    # ---- vendors --------------------------------------------------------------------------------------------
    def admit(self, caller: Principal, spec: JobSpec, policy: FederationPolicy | None = None) -> AdmissionDecision:
        """Admission under `policy` (default: the one in force, read once for the whole decision)."""
        policy = policy or self.policy.policy
        return admit(spec, caller, policy, self.policy.catalogue, self.clock(), self.usage())

    async def create_job(self, caller: Principal, spec: JobSpec, request_id: str = "") -> Job:
        policy = self.policy.policy  # one policy for the whole decision, even if a reload swaps it meanwhile
        if caller.kind == "user" and caller.tenant == spec.tenant and spec.tenant in policy.tenants:
            # Members act, viewers and outsiders do not (in a joint project: its members, from any tenant).
            access.require_member(caller, policy, spec.tenant, spec.project)
        decision = self.admit(caller, spec, policy)
        if not decision.admitted:
            reason = decision.reasons[0]
            raise AdmissionRejected(reason.message, reason=reason.code)
        self.reservations.check_job(spec)
        now = self.clock()
        job = Job(
            job_id=new_job_id(now),
            spec=spec,
            state=JobState.QUEUED,
            create_time=now,
            update_time=now,
            request_id=request_id,
            owner=caller.uri,
            reasons=decision.reasons,
        )
        event = JobEvent(job.job_id, JobState.QUEUED, now, 0, "", decision.reasons[0].message)
        stored, created = await self.commits.create_job(job, event)
        if created:
            self._remember(job)
        return stored

    def get_job(self, caller: Principal, job_id: str) -> Job:
        job = self.active.get(job_id) or self.store.get_job(job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found", reason="JOB_NOT_FOUND")
        access.require_job_access(caller, job, self.policy.policy)
        return self.with_pending_reasons(job)

    def list_jobs(
        self,
        caller: Principal,
        tenant: str = "",
        project: str = "",
        states: Collection[JobState] = (),
        page_size: int = 100,
        page_token: str = "",
    ) -> JobPage:
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        tenants = access.visible_tenants(caller, tenant)
        joint = access.joint_projects_of(caller, self.policy.policy) if tenants is not None and not tenant else ()
        size = min(page_size or 100, MAX_PAGE_SIZE)
        page = self.store.list_jobs(tenants, project, states, size, page_token, or_projects=joint)
        # Why a job waits changes with every capacity report: show the live reasons, not stored ones.
        policy = self.policy.policy
        snapshot = self.snapshot() if any(j.state == JobState.QUEUED for j in page.jobs) else None
        jobs = tuple(
            self.with_pending_reasons(self.active.get(j.job_id, j), snapshot)
            for j in page.jobs
            if access.can_see_job(caller, j, policy)  # a member scoped to some projects sees only those
        )
        return JobPage(jobs, page.next_page_token)

    def cancel_job(self, caller: Principal, job_id: str, reason: str = "") -> Job:
        job = self.get_job(caller, job_id)
        access.require_job_access(caller, job, self.policy.policy, act=True)
        if job.state.terminal:
            return job
        message = f"cancelled by {caller.uri}" + (f": {reason}" if reason else "")
        for placement in job.placements if job.state.holds_capacity else ():
            self.registry.send(placement.site, CancelCommand(job.job_id, job.epoch, message))
        return self.transition(job, JobState.CANCELLED, message)

    async def watch_job(self, caller: Principal, job_id: str) -> AsyncIterator[tuple[JobEvent, Job]]:
        self.get_job(caller, job_id)  # access check before subscribing
        queue = self.bus.subscribe(job_id)
        try:
            job = self.get_job(caller, job_id)
            yield (
                JobEvent(job_id, job.state, job.update_time, job.attempt, ",".join(job.sites), "current state"),
                job,
            )
            while not job.state.terminal:
                item = await queue.get()
                if item is None:  # missed events: resync from the source of truth
                    job = self.get_job(caller, job_id)
                    yield JobEvent(job_id, job.state, job.update_time, job.attempt, "", "resync"), job
                    continue
                event, job = item
                yield event, job
        finally:
            self.bus.unsubscribe(job_id, queue)

    def explain(self, caller: Principal, job_id: str = "", spec: JobSpec | None = None) -> Explanation:
        """Why a job is where it is, or where a spec would go now. An existing job is judged as its submitter
        would be (a fellow member of a joint project may ask about a job another tenant submitted)."""
        job = self.get_job(caller, job_id) if job_id else None
        submitter = caller
        if job is not None:
            spec = job.spec
            with contextlib.suppress(GatewayError):
                submitter = principal_from_uri(job.owner, caller.federation) if job.owner else caller
        if spec is None:
            raise InvalidArgument("explain needs a job id or a job spec")
        policy = self.policy.policy
        decision = self.admit(submitter, spec, policy)
        if not decision.admitted:
            return Explanation(False, decision.reasons, (), decision.policy_version)
        if job is not None and job.state != JobState.QUEUED:
            return Explanation(True, job.reasons, (), decision.policy_version)
        hold = self.reservations.hold(self._holding.values())
        views = hold.views_for(spec, self.registry.views(hold.withhold(self.leases())))
        backing_off = self.gangs.backing_off(job.job_id) if job is not None else frozenset()
        outcome = self.plan(
            spec, decision.classes, views, self.usage(views), backing_off, policy, lambda a: hold.allows(spec, a)
        )
        site_said = tuple(r for r in job.reasons if r.stage == "site") if job is not None else ()
        reasons = decision.reasons + site_said + outcome.reasons + (() if outcome.parts else hold.notes(spec))
        if job is not None:  # a backfill reservation it holds or waits behind, or victims it waits for
            reasons += self.queue_holds.reasons_for(job.job_id, decision.classes)
        return Explanation(True, reasons, outcome.candidates, decision.policy_version)

    def usage_report(
        self, caller: Principal, start: datetime, end: datetime | None = None, project: str = ""
    ) -> list[UsageRow]:
        """Usage the caller may see: its tenant's projects and the joint projects it is in (admins: all)."""
        access.require_role(caller, "user", "admin")
        policy, catalogue = self.policy.policy, self.policy.catalogue
        rows = []
        for tenant, proj, cls, hours, attempts in self.store.usage_between(start, end or self.clock()):
            if project and proj != project:
                continue
            if access.role_in(caller, policy, tenant, proj) is None:
                continue
            rows.append(UsageRow(tenant, proj, cls, hours, catalogue.normalised_compute(cls, hours), attempts))
        return rows

    def list_sites(self, caller: Principal) -> list[SiteView]:
        access.require_role(caller, "user", "admin")
        return sorted(self.registry.views(self.leases()), key=lambda s: s.name)

    # ---- admins ---------------------------------------------------------------------------------------------
    def drain_site(self, caller: Principal, site: str, draining: bool) -> SiteView:
        access.require_role(caller, "admin")
        self.registry.set_draining(site, draining)
        if not draining:
            self.capacity_changed()
        return self.registry.view(site, self.leases().get(site, {}))
