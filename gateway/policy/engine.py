"""Policy evaluation: pure functions from (policy, catalogue, job, time, live usage) to a decision with the
rules that matched and why, and the policy version it was made under.

Owns: what the language means. Admission (`evaluate`) decides whether a job may enter the queues and which
classes it may use; placement asks `option_verdict` whether one site and class may run it now (residency,
per-site rules, quotas against live usage). Rules are checked in order for each placement option (a class,
and at placement a site region): the first matching allow or deny decides; every matching require must be met;
no match allows. Any exception inside evaluation denies (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from fedgate.common.reasons import ReasonCode
from gateway.jobs.model import JobSpec, Reason
from gateway.policy.catalogue import Catalogue
from gateway.policy.document import FederationPolicy
from gateway.policy.model import Match, Rule
from gateway.policy.quotas import Usage, quota_never_fits, quota_verdict, quotas_for

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reasons: tuple[Reason, ...]
    classes: tuple[str, ...]
    policy_version: str
    matched: tuple[str, ...] = ()  # names of the rules that matched
    priority: int = 0
    priority_class: str = ""


def _deny(policy: FederationPolicy, code: str, message: str, matched: tuple[str, ...] = ()) -> Decision:
    return Decision(False, (Reason("policy", code, message),), (), policy.version, matched)


def evaluate(
    policy: FederationPolicy, catalogue: Catalogue, spec: JobSpec, now: datetime, usage: Usage | None = None
) -> Decision:
    """May this job enter the queues, on which classes, at what priority? Fails closed."""
    try:
        return _evaluate(policy, catalogue, spec, now, usage or Usage())
    except Exception as exc:  # a bug or a surprise in a policy must deny, never admit
        return _deny(policy, "EVALUATION_ERROR", f"the policy could not be evaluated ({type(exc).__name__}); denied")


def _evaluate(policy: FederationPolicy, catalogue: Catalogue, spec: JobSpec, now: datetime, usage: Usage) -> Decision:
    if spec.tenant not in policy.tenants:
        known = ", ".join(sorted(policy.tenants)) or "none"
        return _deny(
            policy,
            "UNKNOWN_TENANT",
            f"tenant {spec.tenant!r} is not a member of federation {policy.federation!r} (known: {known})",
        )
    projects = policy.projects_of(spec.tenant)
    if spec.project not in projects:
        known = ", ".join(sorted(projects)) or "none"
        return _deny(
            policy,
            "UNKNOWN_PROJECT",
            f"project {spec.project!r} does not exist in tenant {spec.tenant!r} (known: {known})",
        )
    priority_class = policy.priorities.get(spec.priority_class) if spec.priority_class else policy.default_priority
    if spec.priority_class and priority_class is None:
        known = ", ".join(sorted(policy.priorities)) or "none"
        return _deny(
            policy, "UNKNOWN_PRIORITY_CLASS", f"priority class {spec.priority_class!r} is not defined ({known})"
        )
    if spec.dataset and spec.dataset not in policy.network.datasets:
        known = ", ".join(sorted(policy.network.datasets)) or "none: the policy's network section lists no datasets"
        return _deny(policy, "UNKNOWN_DATASET", f"dataset {spec.dataset!r} is not known to the federation ({known})")
    servable = catalogue.classes_for(spec)
    if not servable:
        return _deny(
            policy,
            "NO_CLASS_CAN_SERVE",
            "no accelerator class in the catalogue meets the job's request with a run for its software stack;"
            " add a run for the class's stack or relax the capability",
        )
    permitted = [c for c in servable if _class_permitted(policy, spec.tenant, c)]
    if not permitted:
        return _deny(
            policy,
            "ACCELERATOR_NOT_ALLOWED",
            f"tenant {spec.tenant!r} may not use {', '.join(servable)} under the federation's access policy",
        )
    matched: list[str] = []
    classes: list[str] = []
    refusals: list[Reason] = []
    for cls in permitted:
        verdict = option_rules(policy, spec, now, cls, None)
        matched += [m for m in verdict[1] if m not in matched]
        if verdict[0] is None:
            classes.append(cls)
        else:
            refusals.append(verdict[0])
    if not classes:  # every class refused: each refusal is a reason (the first decides the error's code)
        return Decision(False, tuple(dict.fromkeys(refusals)), (), policy.version, tuple(matched))
    residency = _residency_regions(policy, spec)
    if residency is not None and not residency:
        entry = policy.residency[spec.data_classification]
        return _deny(
            policy,
            "RESIDENCY",
            entry.message
            or f"no site region may process {spec.data_classification} data from {spec.data_region or 'anywhere'}",
        )
    for scope, quota in quotas_for(policy, spec):
        problem = quota_never_fits(quota, spec, classes, catalogue, usage, scope)
        if problem is not None:
            return Decision(False, (problem,), (), policy.version, tuple(matched))
    why = f"tenant {spec.tenant}/{spec.project} may run on: {', '.join(classes)}"
    if matched:
        why += f" (rules: {', '.join(matched)})"
    return Decision(
        True,
        (Reason("policy", ReasonCode.ADMITTED, why),),
        tuple(classes),
        policy.version,
        tuple(matched),
        priority_class.priority if priority_class else 0,
        priority_class.name if priority_class else "",
    )


def _class_permitted(policy: FederationPolicy, tenant: str, cls: str) -> bool:
    spec = policy.tenants[tenant].spec
    access = spec.accelerators if spec else None
    if access is None:
        return True
    if cls in access.deny or "*" in access.deny:
        return False
    return not access.allow or "*" in access.allow or cls in access.allow


def _in_hours(window: str, now: datetime) -> bool:
    start, end = window.split("-")
    minute = now.hour * 60 + now.minute
    lo = int(start[:2]) * 60 + int(start[3:])
    hi = int(end[:2]) * 60 + int(end[3:])
    return lo <= minute < hi if lo <= hi else minute >= lo or minute < hi


def matches(match: Match, spec: JobSpec, now: datetime, cls: str, region: str | None) -> bool:
    """Does a rule's match hold for one option? region None (admission): region conditions are not decided
    yet, so a rule that names regions does not match at admission; placement checks it per site."""
    labels = dict(spec.labels)
    checks: list[Callable[[], bool]] = [
        lambda: not match.tenants or spec.tenant in match.tenants,
        lambda: not match.projects or spec.project in match.projects,
        lambda: not match.classes or cls in match.classes,
        lambda: not match.regions or (region is not None and region in match.regions),
        lambda: not match.classifications or spec.data_classification in match.classifications,
        lambda: all(labels.get(k) == v for k, v in match.labels.items()),
        lambda: match.min_cards is None or spec.resources.cards >= match.min_cards,
        lambda: match.max_cards is None or spec.resources.cards <= match.max_cards,
        lambda: not match.hours or _in_hours(match.hours, now),
        lambda: not match.days or DAYS[now.weekday()] in match.days,
    ]
    return all(check() for check in checks)


def _unmet(rule: Rule, spec: JobSpec, policy: FederationPolicy) -> str:
    need = rule.require
    if need is None:
        return ""
    missing = [key for key in need.labels if key not in dict(spec.labels)]
    if missing:
        return f"label {missing[0]!r} is missing"
    if need.max_runtime_s is not None and spec.max_runtime.total_seconds() > need.max_runtime_s:
        return f"maxRuntime is above {need.max_runtime_s} s"
    default = policy.default_priority
    priority_class = spec.priority_class or (default.name if default else "")
    if need.priority_classes and priority_class not in need.priority_classes:
        return f"priority class must be one of {', '.join(need.priority_classes)}"
    if need.classification and not spec.data_classification:
        return "the job declares no data classification"
    return ""


def option_rules(
    policy: FederationPolicy, spec: JobSpec, now: datetime, cls: str, region: str | None, site: str = ""
) -> tuple[Reason | None, tuple[str, ...]]:
    """The rules' verdict on one option: (None, matched) when allowed, (reason, matched) when not."""
    matched: list[str] = []
    for rule in policy.rules:
        if not matches(rule.match, spec, now, cls, region):
            continue
        matched.append(rule.name)
        if rule.effect == "require":
            unmet = _unmet(rule, spec, policy)
            if unmet:
                return Reason(
                    "policy", ReasonCode.RULE_REQUIRE, f"rule {rule.name}: {rule.message} ({unmet})", site
                ), tuple(matched)
            continue
        if rule.effect == "deny":
            return Reason("policy", ReasonCode.RULE_DENY, f"rule {rule.name}: {rule.message}", site), tuple(matched)
        return None, tuple(matched)  # the first matching allow decides
    return None, tuple(matched)


def _residency_regions(policy: FederationPolicy, spec: JobSpec) -> tuple[str, ...] | None:
    """Site regions the job's data may go to; None when its classification has no residency rule."""
    entry = policy.residency.get(spec.data_classification) if spec.data_classification else None
    if entry is None:
        return None
    return entry.allowed.get(spec.data_region) or entry.allowed.get("*") or ()


def option_verdict(
    policy: FederationPolicy, catalogue: Catalogue, spec: JobSpec, now: datetime, usage: Usage, site: str, cls: str
) -> Reason | None:
    """May `site` run the job on `cls` now? Residency, per-site rules and quotas against live usage. Fails closed."""
    try:
        return _option_verdict(policy, catalogue, spec, now, usage, site, cls)
    except Exception as exc:
        return Reason(
            "policy", ReasonCode.EVALUATION_ERROR, f"the policy could not be evaluated ({type(exc).__name__})", site
        )


def _option_verdict(
    policy: FederationPolicy, catalogue: Catalogue, spec: JobSpec, now: datetime, usage: Usage, site: str, cls: str
) -> Reason | None:
    reason = _standing_verdict(policy, spec, now, site, cls)
    if reason is not None:
        return reason
    return quota_verdict(policy, catalogue, spec, usage, site, cls)


def standing_verdict(policy: FederationPolicy, spec: JobSpec, now: datetime, site: str, cls: str) -> Reason | None:
    """The part of `option_verdict` that live usage cannot change (residency and rules, at `now`): a
    scheduling cycle may ask it once per job shape, site and class. Fails closed, like `option_verdict`."""
    try:
        return _standing_verdict(policy, spec, now, site, cls)
    except Exception as exc:
        return Reason(
            "policy", ReasonCode.EVALUATION_ERROR, f"the policy could not be evaluated ({type(exc).__name__})", site
        )


def usage_verdict(
    policy: FederationPolicy, catalogue: Catalogue, spec: JobSpec, usage: Usage, site: str, cls: str
) -> Reason | None:
    """The part of `option_verdict` that live usage decides (quotas). Fails closed, like `option_verdict`."""
    try:
        return quota_verdict(policy, catalogue, spec, usage, site, cls)
    except Exception as exc:
        return Reason(
            "policy", ReasonCode.EVALUATION_ERROR, f"the policy could not be evaluated ({type(exc).__name__})", site
        )


def _standing_verdict(policy: FederationPolicy, spec: JobSpec, now: datetime, site: str, cls: str) -> Reason | None:
    site_spec = policy.sites.get(site)
    region = site_spec.region if site_spec else None
    allowed_regions = _residency_regions(policy, spec)
    if allowed_regions is not None and region not in allowed_regions:
        entry = policy.residency[spec.data_classification]
        message = (
            entry.message or f"{spec.data_classification} data may only go to regions {', '.join(allowed_regions)}"
        )
        return Reason("policy", ReasonCode.RESIDENCY, f"{site} is in region {region or 'unknown'}: {message}", site)
    # Rules again at placement time: time windows may have turned since admission, and a site in the policy
    # has a region that region rules match (an unlisted site has none, so they do not).
    reason, _ = option_rules(policy, spec, now, cls, region, site)
    return reason
