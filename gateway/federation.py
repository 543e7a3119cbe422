"""The gateway's domain core: jobs from admission to the end, as the vendors and admins see them.

Owns: the in-memory view of active jobs over the durable store, every job state change (durable before it is
acknowledged or announced), the scheduling cycle that applies pure placement decisions, and the vendor and
admin operations. The site side of the protocol lives in `gateway.dispatch`, which calls `transition` here.
It never speaks gRPC: the transport layer calls one method per RPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from datetime import UTC, datetime

from gateway import access
from gateway.admission import AdmissionDecision, admit
from gateway.errors import AdmissionRejected, FailedPrecondition, GatewayError, InvalidArgument, NotFound
from gateway.identity.principal import Principal, principal_from_uri
from gateway.model import Job, JobEvent, JobSpec, JobState, Placement, Reason, SiteView
from gateway.placement import Explanation, OptionFilter, place
from gateway.policy import FederationPolicy
from gateway.policy.engine import Usage, evaluate, option_verdict, period_start
from gateway.policy.holder import PolicyHolder
from gateway.sites import CancelCommand, LaunchCommand, SiteRegistry
from gateway.store import JobPage, Store
from gateway.store.commit import GroupCommitter

Clock = Callable[[], datetime]
MAX_PAGE_SIZE = 500
MAX_ATTEMPTS = 3  # attempts a job gets when preempted or lost before it is failed
_sequence = itertools.count()


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_job_id(now: datetime) -> str:
    """Time-sortable id: listing by id is listing by creation time."""
    millis = int(now.timestamp() * 1000)
    return f"job-{millis:011x}{next(_sequence) % 4096:03x}{secrets.token_hex(2)}"


class Federation:
    def __init__(self, store: Store, policy: PolicyHolder, clock: Clock = utc_now) -> None:
        from gateway.events import EventBus

        self.store = store
        self.policy = policy
        self.clock = clock
        self.commits = GroupCommitter(store)
        self.registry = SiteRegistry()
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
        for job in store.active_jobs():
            self._remember(job)

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
        now = self.clock()
        if state.terminal:
            changes.setdefault("end_time", now)
        updated = job.evolve(state=state, update_time=now, **changes)
        event = JobEvent(job.job_id, state, now, updated.attempt, site, message)
        stored = self.store.save_transition(updated, event, cursor)
        self._remember(updated)
        self.bus.publish(stored, updated)
        return updated

    def requeue(self, job: Job, message: str) -> Job:
        """After a preemption or a lost site, queue the job for a new attempt, unless it has had its share."""
        if job.attempt >= MAX_ATTEMPTS:
            return self.transition(job, JobState.FAILED, f"{message}; gave up after {job.attempt} attempts")
        return self.transition(
            job, JobState.QUEUED, f"{message}; queued again for attempt {job.attempt + 1}", placements=()
        )

    # ---- vendors --------------------------------------------------------------------------------------------
    def admit(self, caller: Principal, spec: JobSpec, policy: FederationPolicy | None = None) -> AdmissionDecision:
        """Admission under `policy` (default: the one in force, read once for the whole decision)."""
        policy = policy or self.policy.policy
        return admit(spec, caller, policy, self.policy.catalogue, self.clock(), self.usage())

    # ---- live usage, for quotas -----------------------------------------------------------------------------
    def usage(self, views: list[SiteView] | None = None) -> Usage:
        """What is held now (leases), used this period (card-hours) and offered (live sites), per scope."""
        held: dict[tuple[str, str, str], int] = defaultdict(int)
        now = self.clock()
        hours: dict[tuple[str, str, str], float] = defaultdict(float)
        for job in self._holding.values():
            for p in job.placements:
                held[(job.spec.tenant, job.spec.project, p.accelerator_class)] += p.cards
        for period in ("day", "week", "month"):
            start = period_start(period, now)
            for (tenant, project), used in self._ended_hours(period, start).items():
                hours[(tenant, project, period)] += used
            for job in self._holding.values():
                if job.start_time is not None:
                    elapsed = (now - max(job.start_time, start)).total_seconds() / 3600
                    cards = sum(p.cards for p in job.placements)
                    hours[(job.spec.tenant, job.spec.project, period)] += max(0.0, elapsed) * cards
        offered: dict[str, int] = defaultdict(int)
        for view in views if views is not None else self.registry.views(self.leases()):
            if view.connected and not view.draining:
                for pool in view.pools:
                    offered[pool.accelerator_class] += pool.offered
        return Usage(held, hours, offered)

    def _ended_hours(self, period: str, start: datetime) -> dict[tuple[str, str], float]:
        """Card-hours of ended attempts since `start`, cached until a job ends or the period turns."""
        cached = self._hours_cache.get(period)
        if cached is None or cached[0] != start:
            cached = (start, self.store.card_hours_since(start))
            self._hours_cache[period] = cached
        return cached[1]

    def allows(self, spec: JobSpec, usage: Usage, policy: FederationPolicy | None = None) -> OptionFilter:
        """The policy's word on each (site, class) option for this job, as placement asks for it."""
        policy, catalogue, now = policy or self.policy.policy, self.policy.catalogue, self.clock()

        def allows(site: SiteView, cls: str) -> Reason | None:
            if site.terms is not None:  # the centre's own veto, as its agent reported it
                accelerator = catalogue.get(cls)
                run = spec.run_for(accelerator.stack if accelerator else "")
                refusal = site.terms.refusal(spec, run.image if run else "")
                if refusal:
                    return Reason("offers", "SITE_TERMS", f"{site.name}'s own policy: {refusal}", site.name)
            return option_verdict(policy, catalogue, spec, now, usage, site.name, cls)

        return allows

    async def create_job(self, caller: Principal, spec: JobSpec, request_id: str = "") -> Job:
        policy = self.policy.policy  # one policy for the whole decision, even if a reload swaps it meanwhile
        if caller.kind == "user" and caller.tenant == spec.tenant and spec.tenant in policy.tenants:
            # Members act, viewers and outsiders do not (in a joint project: its members, from any tenant).
            access.require_member(caller, policy, spec.tenant, spec.project)
        decision = self.admit(caller, spec, policy)
        if not decision.admitted:
            reason = decision.reasons[0]
            raise AdmissionRejected(reason.message, reason=reason.code)
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
        jobs = tuple(
            self.with_pending_reasons(self.active.get(j.job_id, j))
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
        views = self.registry.views(self.leases())
        allows = self.allows(spec, self.usage(views), policy)
        outcome = place(decision.classes, spec.resources.cards, views, allows)
        return Explanation(True, decision.reasons + outcome.reasons, outcome.candidates, decision.policy_version)

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

    # ---- scheduling -----------------------------------------------------------------------------------------
    def leases(self) -> dict[str, dict[str, int]]:
        """Cards this gateway has leased per site and class (jobs dispatched or running)."""
        leased: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for job in self._holding.values():
            for p in job.placements:
                leased[p.site][p.accelerator_class] += p.cards
        return leased

    def schedule(self) -> int:
        """One scheduling cycle: place queued jobs oldest first and dispatch them. Returns how many.

        A job that cannot fit anywhere is skipped after one dictionary look-up (the largest free block per
        class), so a cycle over a long queue with no room costs little; why it waits is worked out only when
        someone asks (`with_pending_reasons`).
        """
        if self._capacity_grew:
            # Capacity may have grown: every queued job gets a look.
            candidates = list(self._queued)
        else:
            # Nothing freed since the last full pass: jobs that did not fit then still do not; only new ones.
            candidates = [job_id for job_id in self._fresh if job_id in self._queued]
        self._capacity_grew, self._fresh = False, []
        if not candidates:
            return 0
        # Higher priority first, then oldest first (job ids sort by creation time).
        candidates.sort(key=lambda job_id: (-self._priority(self.active[job_id].spec), job_id))
        leases = self.leases()
        views = {view.name: view for view in self.registry.views(leases)}
        largest = _largest_free_blocks(views.values())
        usage = self.usage(list(views.values()))
        held = usage.held
        assert isinstance(held, dict)
        dispatched = 0
        for job_id in candidates:
            job, classes = self.active[job_id], self._queued[job_id]
            cards = job.spec.resources.cards
            if all(largest.get(cls, 0) < cards for cls in classes):
                continue
            decision = place(classes, cards, list(views.values()), self.allows(job.spec, usage))
            if decision.placement is None:
                continue
            self._dispatch(job, decision.placement, decision.reasons)
            held[(job.spec.tenant, job.spec.project, decision.placement.accelerator_class)] += cards
            site = decision.placement.site
            leases[site][decision.placement.accelerator_class] += decision.placement.cards
            views[site] = self.registry.view(site, leases[site])
            largest = _largest_free_blocks(views.values())
            dispatched += 1
        return dispatched

    def with_pending_reasons(self, job: Job) -> Job:
        """A queued job with the live reason chain of why it waits (policy, then each site's answer)."""
        if job.state != JobState.QUEUED:
            return job
        classes = self._queued.get(job.job_id) or self.policy.catalogue.classes_for(job.spec)
        views = self.registry.views(self.leases())
        outcome = place(classes, job.spec.resources.cards, views, self.allows(job.spec, self.usage(views)))
        kept = tuple(r for r in job.reasons if r.stage in {"policy", "site"})
        return job.evolve(reasons=kept + outcome.reasons)

    def launch_command(self, job: Job, placement: Placement) -> LaunchCommand | None:
        """What a site is told to run for its part of the job's current lease; None when no run fits."""
        accelerator = self.policy.catalogue.get(placement.accelerator_class)
        run = job.spec.run_for(accelerator.stack if accelerator else "")
        if run is None:
            return None
        spec = job.spec
        return LaunchCommand(
            job.job_id,
            job.epoch,
            job.attempt,
            spec.tenant,
            spec.project,
            placement.accelerator_class,
            placement.cards,
            run,
            spec.max_runtime,
            spec.env,
            spec.labels,
        )

    def _dispatch(self, job: Job, placement: Placement, reasons: tuple[Reason, ...]) -> None:
        if self.launch_command(job, placement) is None:  # admission guarantees a run; a catalogue change may not
            raise FailedPrecondition(f"job {job.job_id} has no run for {placement.accelerator_class}")
        job = self.transition(
            job,
            JobState.DISPATCHED,
            reasons[0].message,
            site=placement.site,
            epoch=job.epoch + 1,
            attempt=job.attempt + 1,
            placements=(placement,),
            reasons=reasons,
        )
        command = self.launch_command(job, placement)
        assert command is not None
        self.registry.send(placement.site, command)

    async def run_scheduler(self, period: float = 1.0, batch_window: float = 0.02) -> None:
        """Schedule on wake-ups (new job, freed cards, new capacity) and at least every `period` s.

        After each cycle it waits `batch_window` s, so that a burst of submissions costs one cycle, not one
        cycle per job in front of every waiting request.
        """
        while True:
            try:
                await asyncio.wait_for(self.wakeup.wait(), timeout=period)
            except TimeoutError:
                self._capacity_grew = True  # the periodic full pass: a safety net for anything missed
            self.wakeup.clear()
            self.schedule()
            await asyncio.sleep(batch_window)


def _largest_free_blocks(views: Iterable[SiteView]) -> dict[str, int]:
    """The most cards of each class free at any one placeable site."""
    largest: dict[str, int] = {}
    for view in views:
        if view.connected and not view.draining:
            for pool in view.pools:
                free = view.free_cards(pool)
                if free > largest.get(pool.accelerator_class, 0):
                    largest[pool.accelerator_class] = free
    return largest
