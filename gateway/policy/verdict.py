"""What the federation would decide for one submission, worked out offline: `fedgate policy explain` and
`fedgate policy test` both ask `judge`.

Owns: putting together the checks a submission meets in the gateway, in the gateway's order: the caller's
access (as `JobService.create_job` checks it), admission (`gateway.jobs.admission.admit`, which asks the policy
engine), and then each site of the policy, per class (`option_verdict`: residency, region rules, quotas
against the usage given). It is pure: no I/O, the clock and the usage are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.errors import PermissionDenied
from gateway.identity.principal import Principal
from gateway.jobs.admission import admit
from gateway.jobs.model import JobSpec, Reason
from gateway.policy.catalogue import Catalogue
from gateway.policy.document import FederationPolicy
from gateway.policy.engine import option_verdict
from gateway.policy.quotas import Usage
from gateway.trust import access

DEFAULT_USER = "policy-test"


@dataclass(frozen=True)
class SiteVerdict:
    site: str
    region: str
    accelerator_class: str
    reason: Reason | None  # None: the policy lets this site run the job on this class now


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reasons: tuple[Reason, ...]
    classes: tuple[str, ...]  # the classes admission allows, in catalogue order
    matched: tuple[str, ...]  # the rules that matched
    priority: int
    priority_class: str
    policy_version: str
    sites: tuple[SiteVerdict, ...]  # every site of the policy, for every class the job could use


def default_caller(policy: FederationPolicy, spec: JobSpec) -> Principal:
    """A member of the job's tenant who may submit to its project: the user a joint project names, else the
    first acting member of the tenant's list, else any user of the tenant (when it has no list)."""
    tenant = policy.tenants.get(spec.tenant)
    user = DEFAULT_USER
    joint = policy.joint.get(spec.project)
    named = [m.user for m in joint.members if m.tenant == spec.tenant and m.user] if joint else []
    if named:
        user = named[0]
    elif tenant is not None and tenant.members:
        members = list(tenant.members.values())
        acting = [m for m in members if m.role == "member" and (not m.projects or spec.project in m.projects)]
        user = (acting or members)[0].user
    return Principal.user(policy.federation, spec.tenant, user)


def judge(
    policy: FederationPolicy,
    catalogue: Catalogue,
    spec: JobSpec,
    caller: Principal,
    now: datetime,
    usage: Usage | None = None,
) -> Verdict:
    """Access as the gateway checks it on CreateJob, then admission, then each policy site's verdict."""
    usage = usage or Usage()
    refusal = access_refusal(policy, spec, caller)
    reasons: tuple[Reason, ...]
    classes: tuple[str, ...] = ()
    matched: tuple[str, ...] = ()
    priority = 0
    if refusal is not None:
        allowed, reasons = False, (refusal,)
    else:
        decision = admit(spec, caller, policy, catalogue, now, usage)
        allowed, reasons, classes = decision.admitted, decision.reasons, decision.classes
        matched, priority = decision.matched, decision.priority
    chosen = policy.priorities.get(spec.priority_class) if spec.priority_class else policy.default_priority
    options = classes or catalogue.classes_for(spec) or (spec.resources.accelerator_class,)
    sites = tuple(
        SiteVerdict(name, site.region, cls, option_verdict(policy, catalogue, spec, now, usage, name, cls))
        for name, site in policy.sites.items()
        for cls in options
        if cls
    )
    name = chosen.name if (allowed and chosen is not None) else ""
    return Verdict(allowed, reasons, classes, matched, priority, name, policy.version, sites)


def access_refusal(policy: FederationPolicy, spec: JobSpec, caller: Principal) -> Reason | None:
    """The check `JobService.create_job` makes before admission: members act, viewers and outsiders do not."""
    if caller.kind == "user" and caller.tenant == spec.tenant and spec.tenant in policy.tenants:
        try:
            access.require_member(caller, policy, spec.tenant, spec.project)
        except PermissionDenied as exc:
            return Reason("access", exc.reason, exc.message)
    return None
