"""The outlook: where a job would go now, and why a waiting job waits.

Owns: `plan` (one site, or a gang over several when the job allows it, under the policy's word on every option
and what reservations keep), the snapshot of the sites and live usage placement sees now, and the live reason
chain of a queued job (`with_pending_reasons`: policy, then each site's answer, reservations and earmarks). It
reads the queue, live usage, the site registry, the reservation book, the gang coordinator's backoff and the
earmarks; it changes nothing. The cycle that acts on a plan is `gateway.scheduler.cycle`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from gateway.gangs.coordinator import GangCoordinator
from gateway.gangs.plan import GangPlan, plan_gang
from gateway.jobs.model import Job, JobSpec, JobState, Reason
from gateway.placement.place import Candidate, OptionFilter
from gateway.policy import FederationPolicy
from gateway.policy.holder import PolicyHolder
from gateway.policy.quotas import Usage
from gateway.reservations.ledger import ReservationLedger
from gateway.scheduler.earmarks import EarmarkBook
from gateway.scheduler.liveusage import LiveUsage
from gateway.scheduler.queue import JobQueue
from gateway.sites.model import SiteView
from gateway.sites.registry import SiteRegistry


class Outlook:
    def __init__(
        self,
        queue: JobQueue,
        usage: LiveUsage,
        registry: SiteRegistry,
        policy: PolicyHolder,
        reservations: ReservationLedger,
        gangs: GangCoordinator,
        earmarks: EarmarkBook,
    ) -> None:
        self.queue = queue
        self.usage = usage
        self.registry = registry
        self.policy = policy
        self.reservations = reservations
        self.gangs = gangs
        self.earmarks = earmarks

    def plan(
        self,
        spec: JobSpec,
        classes: Sequence[str],
        views: list[SiteView],
        usage: Usage,
        backing_off: Collection[str] = (),
        policy: FederationPolicy | None = None,
        narrow: Callable[[OptionFilter], OptionFilter] = lambda allows: allows,
    ) -> GangPlan:
        """Where the job would go now: one site, or a gang over several when it allows that. `narrow` adds a
        word of its own to the policy's on each option (what reservations keep). The policy's network ranks a
        gang's sets of sites, and places a job that names a dataset near it."""
        network = (policy or self.policy.policy).network
        allows = narrow(self.usage.allows(spec, usage, policy))
        part = max(1, spec.topology.min_cards_per_site) if spec.topology.max_sites > 1 else 0
        part_allows = narrow(self.usage.allows(spec, usage, policy, part)) if part else None
        resources = spec.resources
        return plan_gang(
            classes,
            resources.cards,
            spec.topology,
            views,
            allows,
            backing_off,
            part_allows,
            nodes=resources.nodes,
            network=network,
            source=network.source(spec.dataset),
        )

    def with_pending_reasons(self, job: Job, snapshot: tuple[list[SiteView], Usage] | None = None) -> Job:
        """A queued job with the live reason chain of why it waits (policy, then each site's answer).
        `snapshot` (sites and usage) lets a listing take one snapshot for all its jobs."""
        if job.state != JobState.QUEUED:
            return job
        classes = self.queue.classes(job.job_id) or self.policy.catalogue.classes_for(job.spec)
        views, usage = snapshot or self.snapshot()
        spec = job.spec
        hold = self.reservations.kept(self.usage.holding())
        backing_off = self.gangs.backing_off(job.job_id) if spec.topology.max_sites > 1 else ()
        views = hold.views_for(spec, views)
        outcome = self.plan(spec, classes, views, usage, backing_off, narrow=lambda allows: hold.allows(spec, allows))
        kept = tuple(r for r in job.reasons if r.stage in {"policy", "site"})
        notes = () if outcome.parts else hold.notes(spec)
        return job.evolve(reasons=kept + outcome.reasons + notes + self.earmarks.reasons_for(job.job_id, classes))

    def snapshot(self) -> tuple[list[SiteView], Usage]:
        """The sites as placement sees them now (less what reservations keep), and the live usage quotas are
        checked against."""
        views = self.registry.views(self.reservations.kept(self.usage.holding()).withhold(self.usage.leases()))
        return views, self.usage.usage(views)

    def explain_placement(
        self, spec: JobSpec, classes: Sequence[str], job: Job | None, policy: FederationPolicy
    ) -> tuple[tuple[Reason, ...], tuple[Candidate, ...]]:
        """Where `spec` (of `job`, when it exists) would go now under `policy`: each site's answer, what
        reservations keep, and for a job the earmarks it holds or waits behind; and the candidate sites."""
        hold = self.reservations.kept(self.usage.holding())
        views = hold.views_for(spec, self.registry.views(hold.withhold(self.usage.leases())))
        backing_off = self.gangs.backing_off(job.job_id) if job is not None else frozenset()
        outcome = self.plan(
            spec, classes, views, self.usage.usage(views), backing_off, policy, lambda a: hold.allows(spec, a)
        )
        reasons = outcome.reasons + (() if outcome.parts else hold.notes(spec))
        if job is not None:  # a backfill reservation it holds or waits behind, or victims it waits for
            reasons += self.earmarks.reasons_for(job.job_id, classes)
        return reasons, outcome.candidates
