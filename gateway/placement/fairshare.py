"""Fair share: which tenant (and project) is furthest below its share, by weighted dominant-resource fairness.

Owns: the pure ordering key the scheduler sorts its queue by, after priority: a tenant's dominant share (the
largest fraction it holds of what sites offer of any one class) divided by its weight, then the same for the
project inside the tenant (a joint project counts on its own, with its own weight), then age. Aging lifts a job
one priority level per `AGING_PERIOD` waited, so that no job waits behind newer ones for ever.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta

from gateway.jobs.model import Job, JobSpec
from gateway.policy import FederationPolicy
from gateway.policy.quotas import Usage

AGING_PERIOD = timedelta(minutes=10)
MAX_AGING_BONUS = 50


def dominant_shares(usage: Usage, policy: FederationPolicy) -> dict[tuple[str, str], float]:
    """(tenant, '*') and (tenant, project) -> weighted dominant share of the offered cards, 0 when none held."""
    held_by: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (tenant, project, cls), cards in usage.held.items():
        scope = ("*", project) if project in policy.joint else (tenant, "*")
        held_by[scope][cls] += cards
        held_by[(tenant, project)][cls] += cards
    shares: dict[tuple[str, str], float] = {}
    for scope, classes in held_by.items():
        dominant = max((cards / usage.offered[c] for c, cards in classes.items() if usage.offered.get(c)), default=0.0)
        shares[scope] = dominant / max(_weight(policy, scope), 1e-9)
    return shares


def _weight(policy: FederationPolicy, scope: tuple[str, str]) -> float:
    tenant, project = scope
    if tenant == "*":
        joint = policy.joint.get(project)
        return joint.weight if joint else 1.0
    spec = policy.tenants[tenant].spec if tenant in policy.tenants else None
    if spec is None:
        return 1.0
    if project == "*":
        return spec.weight
    return next((p.weight for p in spec.projects if p.name == project), 1.0)


def queue_key(
    job: Job, priority: int, shares: Mapping[tuple[str, str], float], policy: FederationPolicy, now: datetime
) -> tuple[int, float, float, str]:
    """Sort key: higher (aged) priority first, then the lower weighted share, then the older job."""
    spec = job.spec
    owner_share, project_share = _shares_of(spec, shares, policy)
    return (-_aged(priority, job, now), owner_share, project_share, job.job_id)


def _aged(priority: int, job: Job, now: datetime) -> int:
    return priority + min(MAX_AGING_BONUS, int((now - job.create_time) / AGING_PERIOD))


def next_aging_step(job: Job, now: datetime) -> datetime | None:
    """When the job's aged priority next goes up (None: it has reached MAX_AGING_BONUS)."""
    steps = int((now - job.create_time) / AGING_PERIOD)
    return None if steps >= MAX_AGING_BONUS else job.create_time + (steps + 1) * AGING_PERIOD


def scope_parts(
    scopes: Iterable[tuple[str, str, str]],
    priority_of: Callable[[str], int],
    shares: Mapping[tuple[str, str], float],
    policy: FederationPolicy,
) -> dict[tuple[str, str, str], tuple[int, float, float]]:
    """(tenant, project, priority class) -> its part of `queue_key`: base priority, the owner's and the
    project's weighted shares."""
    parts = {}
    for tenant, project, priority_class in scopes:
        owner = ("*", project) if project in policy.joint else (tenant, "*")
        parts[(tenant, project, priority_class)] = (
            priority_of(priority_class),
            shares.get(owner, 0.0),
            shares.get((tenant, project), 0.0),
        )
    return parts


def _shares_of(spec: JobSpec, shares: Mapping[tuple[str, str], float], policy: FederationPolicy) -> tuple[float, float]:
    """The share of the job's owner (its tenant, or its joint project across tenants), then of its project."""
    owner = ("*", spec.project) if spec.project in policy.joint else (spec.tenant, "*")
    return shares.get(owner, 0.0), shares.get((spec.tenant, spec.project), 0.0)


def queue_keys(
    jobs: Iterable[Job],
    priority_of: Callable[[JobSpec], int],
    shares: Mapping[tuple[str, str], float],
    policy: FederationPolicy,
    now: datetime,
) -> list[tuple[int, float, float, str]]:
    """`queue_key` of each job, with `priority_of` (which MUST depend only on the spec's priority class) and
    the shares worked out once per (tenant, project, priority class) instead of once per job."""
    scoped: dict[tuple[str, str, str], tuple[int, float, float]] = {}
    keys = []
    for job in jobs:
        spec = job.spec
        scope = (spec.tenant, spec.project, spec.priority_class)
        part = scoped.get(scope)
        if part is None:
            part = scoped[scope] = (priority_of(spec), *_shares_of(spec, shares, policy))
        keys.append((-_aged(part[0], job, now), part[1], part[2], job.job_id))
    return keys
