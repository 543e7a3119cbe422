"""Quotas: which limits apply to a job, and whether live usage leaves room for it.

Owns: the scopes a quota can cover (a tenant, one of its projects, a joint project shared across tenants),
live `Usage` (cards held now, card-hours this period, cards offered), the admission check (a job that can
never fit, or a period budget already spent) and the placement check (held + this job <= the limit, with
share-derived limits following what sites offer now). Pure, like the rest of the policy engine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from fedgate.common.reasons import ReasonCode
from gateway.jobs.model import JobSpec, Reason
from gateway.policy.catalogue import Catalogue
from gateway.policy.document import FederationPolicy
from gateway.policy.model import Quota


@dataclass(frozen=True)
class Usage:
    """Live usage quotas are checked against. Keys: (tenant, project); '*' as class sums every class."""

    held: Mapping[tuple[str, str, str], int] = field(default_factory=dict)  # (tenant, project, class) -> cards
    # (tenant, project, period) -> card-hours used in the current day / week / month (UTC)
    card_hours: Mapping[tuple[str, str, str], float] = field(default_factory=dict)
    offered: Mapping[str, int] = field(default_factory=dict)  # class -> cards offered by live sites


def quotas_for(policy: FederationPolicy, spec: JobSpec) -> list[tuple[tuple[str, str], Quota]]:
    """(scope, quota) pairs that apply: the tenant's, its own project's, or the joint project's (shared)."""
    out: list[tuple[tuple[str, str], Quota]] = []
    tenant = policy.tenants[spec.tenant].spec
    joint = policy.joint.get(spec.project)
    if joint is not None:
        if joint.quota is not None:
            out.append((("*", spec.project), joint.quota))
    elif tenant is not None:
        if tenant.quota is not None:
            out.append(((spec.tenant, "*"), tenant.quota))
        project = next((p for p in tenant.projects if p.name == spec.project), None)
        if project is not None and project.quota is not None:
            out.append(((spec.tenant, spec.project), project.quota))
    return out


def _covers(pattern: str, value: str) -> bool:
    return pattern in {"*", value}


def _held(usage: Usage, scope: tuple[str, str], cls: str) -> int:
    tenant, project = scope
    return sum(
        n for (t, p, c), n in usage.held.items() if _covers(tenant, t) and _covers(project, p) and _covers(cls, c)
    )


def _hours(usage: Usage, scope: tuple[str, str], period: str) -> float:
    tenant, project = scope
    return sum(
        h for (t, p, d), h in usage.card_hours.items() if _covers(tenant, t) and _covers(project, p) and d == period
    )


def card_limit(quota: Quota, cls: str, usage: Usage) -> int | None:
    """Concurrent cards allowed for `cls` ('*': all classes): the explicit number, else the share of offers."""
    if cls in quota.concurrent_cards:
        return quota.concurrent_cards[cls]
    if quota.share is not None:
        offered = sum(usage.offered.values()) if cls == "*" else usage.offered.get(cls, 0)
        return math.floor(quota.share * offered)
    return None


def _scope_name(scope: tuple[str, str]) -> str:
    tenant, project = scope
    return (
        f"joint project {project}"
        if tenant == "*"
        else (f"tenant {tenant}" if project == "*" else f"project {tenant}/{project}")
    )


def quota_never_fits(
    quota: Quota, spec: JobSpec, classes: list[str], catalogue: Catalogue, usage: Usage, scope: tuple[str, str]
) -> Reason | None:
    cards = spec.resources.cards
    where = _scope_name(scope)
    if quota.card_hours is not None and _hours(usage, scope, quota.period) >= quota.card_hours:
        return Reason(
            "policy",
            ReasonCode.QUOTA_EXHAUSTED,
            f"{where} has used its {quota.card_hours:g} card-hours this {quota.period}",
        )
    limits = [quota.concurrent_cards.get(c, quota.concurrent_cards.get("*")) for c in classes]
    if quota.concurrent_cards and all(limit is not None and cards > limit for limit in limits):
        return Reason(
            "policy",
            ReasonCode.QUOTA_TOO_SMALL,
            f"the job asks for {cards} cards; {where} may hold at most {max(limit or 0 for limit in limits)}",
        )
    if quota.concurrent_pflops is not None:
        smallest = min(catalogue.normalised_compute(c, cards) for c in classes)
        if smallest > quota.concurrent_pflops:
            return Reason(
                "policy",
                ReasonCode.QUOTA_TOO_SMALL,
                f"the job needs {smallest:g} PFLOPS; {where} may hold at most {quota.concurrent_pflops:g}",
            )
    return None


def quota_verdict(
    policy: FederationPolicy, catalogue: Catalogue, spec: JobSpec, usage: Usage, site: str, cls: str
) -> Reason | None:
    """Room under every quota that applies for this job on `cls` now, given live usage; None when there is."""
    cards = spec.resources.cards
    for scope, quota in quotas_for(policy, spec):
        for key in (cls, "*"):
            limit = card_limit(quota, key, usage)
            if limit is not None and _held(usage, scope, key) + cards > limit:
                held = _held(usage, scope, key)
                what = "cards" if key == "*" else f"{key} cards"
                return Reason(
                    "policy", ReasonCode.QUOTA, f"{_scope_name(scope)} holds {held} of its {limit} {what}", site
                )
        if quota.concurrent_pflops is not None:
            held_pflops = sum(
                catalogue.normalised_compute(c, n)
                for (t, p, c), n in usage.held.items()
                if _covers(scope[0], t) and _covers(scope[1], p)
            )
            if held_pflops + catalogue.normalised_compute(cls, cards) > quota.concurrent_pflops:
                return Reason(
                    "policy",
                    ReasonCode.QUOTA,
                    f"{_scope_name(scope)} holds {held_pflops:g} of its {quota.concurrent_pflops:g} PFLOPS",
                    site,
                )
    return None


def period_start(period: str, now: datetime) -> datetime:
    """Start (UTC) of the day, week (Monday) or month that `now` falls in."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)
