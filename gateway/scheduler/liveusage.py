"""Live usage: what this gateway holds, has used and is offered now, and the policy's word on each option.

Owns: the leases (cards dispatched or running, per site and class), the live `Usage` quotas are checked
against (held cards, card-hours this day/week/month with ended attempts cached per period, live offered
capacity), and `allows`, the per-(site, class) verdict placement asks for (the centre's own terms, then the
policy). It follows the job book as one of its listeners (`job_changed`): the jobs holding cards at a site, and
the card-hours of ended attempts (read from the store, cached per period until an attempt ends). It never changes
a job. It does not decide where jobs go (`gateway.scheduler.cycle`) or tell sites anything
(`gateway.scheduler.launcher`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import replace
from datetime import datetime

from gateway.jobs.model import Job, JobSpec, Reason
from gateway.placement.place import OptionFilter
from gateway.placement.preemption import priority_class
from gateway.policy import FederationPolicy
from gateway.policy.engine import option_verdict
from gateway.policy.holder import PolicyHolder
from gateway.policy.quotas import Usage, period_start
from gateway.scheduler.cyclecache import site_terms_reason
from gateway.sites.model import SiteView
from gateway.sites.registry import SiteRegistry
from gateway.store import Store


class LiveUsage:
    def __init__(
        self,
        store: Store,
        policy: PolicyHolder,
        registry: SiteRegistry,
        clock: Callable[[], datetime],
        on_freed: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.registry = registry
        self.clock = clock
        self.on_freed = on_freed
        """Called when an attempt stops holding cards: they came free."""
        self._holding: dict[str, Job] = {}  # jobs holding cards at a site
        # Their cards, kept up to date job by job so that a cycle does not add up every holding job again:
        # per site and class (the leases), per (tenant, project, class) (held usage); and those running.
        self._leased: dict[str, dict[str, int]] = {}
        self._held: dict[tuple[str, str, str], int] = defaultdict(int)
        self._running: dict[str, Job] = {}
        self.preemptible_changes = 0
        """How many times a job of a preemptible priority class that holds cards changed (a possible victim)."""
        self._hours_cache: dict[str, tuple[datetime, dict[tuple[str, str], float]]] = {}

    def job_changed(self, job: Job) -> None:
        """The job book's listener: follow which jobs hold cards."""
        before = self._holding.get(job.job_id)
        if before is not None:
            self._count(before, -1)
        if job.state.holds_capacity:
            self._holding[job.job_id] = job
            self._count(job, 1)
            found = priority_class(self.policy.policy, job.spec)
            if found is not None and found.preemptible:
                self.preemptible_changes += 1
        elif self._holding.pop(job.job_id, None) is not None:
            self._hours_cache.clear()  # an attempt ended: its card-hours are now in the store
            self.on_freed()

    def _count(self, job: Job, sign: int) -> None:
        """Add (`sign` 1) or take away (-1) a holding job's cards in the leases, held usage and running jobs."""
        for p in job.placements:
            site = self._leased.setdefault(p.site, {})
            left = site[p.accelerator_class] = site.get(p.accelerator_class, 0) + sign * p.cards
            if not left:
                del site[p.accelerator_class]
                if not site:
                    del self._leased[p.site]
            scope = (job.spec.tenant, job.spec.project, p.accelerator_class)
            self._held[scope] += sign * p.cards
            if not self._held[scope]:
                del self._held[scope]
        if sign > 0 and job.start_time is not None:
            self._running[job.job_id] = job
        elif sign < 0:
            self._running.pop(job.job_id, None)

    def holding(self) -> Collection[Job]:
        """The jobs holding cards at a site now (dispatched, reserving or running)."""
        return self._holding.values()

    def holding_job(self, job_id: str) -> Job | None:
        return self._holding.get(job_id)

    def leases(self) -> dict[str, dict[str, int]]:
        """Cards this gateway has leased per site and class (jobs dispatched or running)."""
        leased: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for site, classes in self._leased.items():
            leased[site] = defaultdict(int, classes)
        return leased

    def usage(self, views: list[SiteView] | None = None) -> Usage:
        """What is held now (leases), used this period (card-hours) and offered (live sites), per scope."""
        held = defaultdict(int, self._held)
        now = self.clock()
        hours: dict[tuple[str, str, str], float] = defaultdict(float)
        for period in ("day", "week", "month"):
            start = period_start(period, now)
            for (tenant, project), used in self._ended_hours(period, start).items():
                hours[(tenant, project, period)] += used
            for job in self._running.values():
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

    def allows(
        self, spec: JobSpec, usage: Usage, policy: FederationPolicy | None = None, part_cards: int = 0
    ) -> OptionFilter:
        """The policy's word on each (site, class) option for this job, as placement asks for it. With
        `part_cards` (a gang's smallest part) the centres' size limit judges that part, not the whole job."""
        policy, catalogue, now = policy or self.policy.policy, self.policy.catalogue, self.clock()
        part = replace(spec, resources=replace(spec.resources, cards=part_cards)) if part_cards else spec

        def allows(site: SiteView, cls: str) -> Reason | None:
            refusal = site_terms_reason(site, spec, cls, catalogue, part)  # the centre's own veto, as reported
            if refusal is not None:
                return refusal
            return option_verdict(policy, catalogue, spec, now, usage, site.name, cls)

        return allows
