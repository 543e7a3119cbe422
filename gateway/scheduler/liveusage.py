"""Live usage: what this gateway holds, has used and is offered now, and the policy's word on each option.

Owns: the leases (cards dispatched or running, per site and class), the live `Usage` quotas are checked
against (held cards, card-hours this day/week/month, live offered capacity), and `allows`, the per-(site, class)
verdict placement asks for (the centre's own terms, then the policy). It follows the job book as one of its
listeners (`job_changed`): the jobs holding cards at a site, and the card-hours of ended attempts (read from the
store once per period, then added to as attempts end). The running totals that make a read cost O(scopes), not
O(jobs), are `gateway.scheduler.usagetally`'s. It never changes a job. It does not decide where jobs go
(`gateway.scheduler.cycle`) or tell sites anything (`gateway.scheduler.launcher`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from datetime import datetime

from gateway.jobs.model import Job, JobSpec, Reason
from gateway.placement.place import OptionFilter
from gateway.placement.preemption import priority_class
from gateway.policy import FederationPolicy
from gateway.policy.engine import option_verdict
from gateway.policy.holder import PolicyHolder
from gateway.policy.quotas import Usage
from gateway.scheduler.cyclecache import site_terms_reason
from gateway.scheduler.releases import Releases
from gateway.scheduler.usagetally import EndedHours, EndedRead, Holdings
from gateway.sites.model import SiteView, offered_by
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
        read_ended: EndedRead | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.registry = registry
        self.clock = clock
        self.on_freed = on_freed
        """Called when an attempt stops holding cards: they came free."""
        self._holdings = Holdings()  # the jobs holding cards at a site, and what they add up to
        self.releases = Releases()
        """When the cards held at each pool come back at the latest (the cycle's reservations read it)."""
        # The ended card-hours since a time: read between the job book's grouped writes (`compose` wires
        # `JobBook.read_after_writes`); alone, straight from the store.
        self._ended = EndedHours(read_ended or (lambda since: (store.card_hours_since(since), frozenset())))
        self.preemptible_changes = 0
        """How many times a job of a preemptible priority class that holds cards changed (a possible victim)."""
        self._preemptible: dict[str, Job] = {}  # holding jobs of a preemptible class under `_preemptible_under`
        self._preemptible_under: FederationPolicy | None = None  # None: to be worked out on the next read

    def job_changed(self, job: Job) -> None:
        """The job book's listener: follow which jobs hold cards, and count an ended attempt's card-hours."""
        if job.state.holds_capacity:
            self._holdings.hold(job)
            self.releases.hold(job)
            policy = self.policy.policy
            found = priority_class(policy, job.spec)
            if found is not None and found.preemptible:
                self.preemptible_changes += 1
                self._preemptible[job.job_id] = job
            else:
                self._preemptible.pop(job.job_id, None)
            if policy is not self._preemptible_under:
                self._preemptible_under = None  # classified under another policy than the rest: read anew
        elif self._holdings.release(job.job_id) is not None:
            self.releases.release(job.job_id)
            self._preemptible.pop(job.job_id, None)
            self._ended.ended(job)  # an attempt ended: its card-hours are now in the store
            self.on_freed()

    def holding(self) -> Collection[Job]:
        """The jobs holding cards at a site now (dispatched, reserving or running)."""
        return self._holdings.jobs.values()

    def holding_by_id(self) -> Mapping[str, Job]:
        """The jobs holding cards at a site now, by id (read only)."""
        return self._holdings.jobs

    def preemptible_holding(self, policy: FederationPolicy) -> Mapping[str, Job]:
        """The jobs holding cards whose priority class `policy` makes preemptible, by id (read only): the
        possible victims, without walking every job holding cards (worked out anew when the policy changed)."""
        if policy is not self._preemptible_under:
            self._preemptible = {
                job_id: job
                for job_id, job in self._holdings.jobs.items()
                if (found := priority_class(policy, job.spec)) is not None and found.preemptible
            }
            self._preemptible_under = policy
        return self._preemptible

    def holding_job(self, job_id: str) -> Job | None:
        return self._holdings.jobs.get(job_id)

    def leases(self) -> dict[str, dict[str, int]]:
        """Cards this gateway has leased per site and class (jobs dispatched or running); the caller's copy."""
        return self._holdings.leases()

    def usage(self, views: list[SiteView] | None = None) -> Usage:
        """What is held now (leases), used this period (card-hours) and offered (live sites), per scope."""
        now = self.clock()
        hours: dict[tuple[str, str, str], float] = defaultdict(float)
        for period in ("day", "week", "month"):
            for (tenant, project), used in self._ended.card_hours(period, now).items():
                hours[(tenant, project, period)] += used
            for (tenant, project), used in self._holdings.card_hours(period, now).items():
                hours[(tenant, project, period)] += used
        offered = self.registry.offered() if views is None else offered_by(views)
        return Usage(self._holdings.held(), hours, offered)

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
