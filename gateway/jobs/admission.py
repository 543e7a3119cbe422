"""Admission: may this job enter the federation's queues at all?

Owns: the pure decision over a job spec, the caller and the policy in force, with the reasons behind it, and
`refusal`, the error of a refused decision (every reason, each naming the spec field to change when there is one).
It does not look at live capacity (that is placement) and does no I/O: the caller passes everything in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fedgate.common.reasons import ReasonCode
from gateway.errors import AdmissionRejected, Violation
from gateway.identity.principal import Principal
from gateway.jobs.model import JobSpec, Reason
from gateway.policy import FederationPolicy
from gateway.policy.catalogue import Catalogue
from gateway.policy.engine import evaluate
from gateway.policy.quotas import Usage

MAX_RUNTIME = timedelta(days=30)

# The field a refusal of each code asks the submitter to change, as a path in the JobSpec message (a reservation's
# request has the same names for tenant, project and resources); a code not here is about the federation (a
# rule, a quota, a site), not one field.
FIELD_BY_CODE: dict[str, str] = {
    ReasonCode.TENANT_MISMATCH: "tenant",
    ReasonCode.UNKNOWN_TENANT: "tenant",
    ReasonCode.UNKNOWN_PROJECT: "project",
    ReasonCode.UNKNOWN_PRIORITY_CLASS: "priority_class",
    ReasonCode.UNKNOWN_ACCELERATOR_CLASS: "resources.accelerator_class",
    ReasonCode.BAD_CARD_COUNT: "resources.cards",
    ReasonCode.BAD_RESOURCES: "resources",
    ReasonCode.NO_RUN: "runs",
    ReasonCode.BAD_MAX_RUNTIME: "max_runtime",
    ReasonCode.UNKNOWN_DATASET: "dataset",
}


@dataclass(frozen=True)
class AdmissionDecision:
    admitted: bool
    reasons: tuple[Reason, ...]
    policy_version: str
    # Classes that could serve the job under this policy, in catalogue order.
    classes: tuple[str, ...] = ()
    matched: tuple[str, ...] = ()  # rules that matched
    priority: int = 0


def refusal(decision: AdmissionDecision, within: str = "spec.") -> AdmissionRejected:
    """The error of a refused decision: its first reason's code and message, every reason as a violation (a
    field violation, its path under `within`, when it names a spec field), and the policy version, stage and
    site in the metadata."""
    first = decision.reasons[0]
    metadata = {"policy_version": decision.policy_version, "stage": first.stage}
    if first.site:
        metadata["site"] = first.site
    if first.code in FIELD_BY_CODE:
        metadata["field"] = within + FIELD_BY_CODE[first.code]
    violations = [
        Violation(
            r.code,
            r.message,
            field=within + FIELD_BY_CODE[r.code] if r.code in FIELD_BY_CODE else "",
            subject=r.site or r.stage,
        )
        for r in decision.reasons
    ]
    return AdmissionRejected(first.message, reason=first.code, metadata=metadata, violations=violations)


def _deny(code: str, message: str, policy: FederationPolicy) -> AdmissionDecision:
    return AdmissionDecision(False, (Reason("policy", code, message),), policy.version)


def admit(
    spec: JobSpec,
    caller: Principal,
    policy: FederationPolicy,
    catalogue: Catalogue,
    now: datetime | None = None,
    usage: Usage | None = None,
) -> AdmissionDecision:
    """Decide whether `caller` may submit `spec` now, given live usage. Fails closed: any doubt denies, with
    the reason. The caller's own checks are here; the policy's are `gateway.policy.engine.evaluate`."""
    if caller.kind == "user" and caller.tenant != spec.tenant:
        return _deny(
            "TENANT_MISMATCH",
            f"{caller.uri} belongs to tenant {caller.tenant!r} and cannot submit for tenant {spec.tenant!r}",
            policy,
        )
    if caller.kind not in {"user", "admin"}:
        return _deny("ROLE_CANNOT_SUBMIT", f"a {caller.kind} principal cannot submit jobs", policy)
    problem = _resource_problem(spec, catalogue)
    if problem is not None:
        return _deny(problem[0], problem[1], policy)
    decision = evaluate(policy, catalogue, spec, now or datetime.now(UTC), usage)
    return AdmissionDecision(
        decision.allowed,
        decision.reasons,
        decision.policy_version,
        decision.classes,
        decision.matched,
        decision.priority,
    )


def _resource_problem(spec: JobSpec, catalogue: Catalogue) -> tuple[str, str] | None:
    resources = spec.resources
    if resources.cards < 1:
        return "BAD_CARD_COUNT", f"a job needs at least one card, got {resources.cards}"
    if bool(resources.accelerator_class) == (resources.capability is not None):
        return "BAD_RESOURCES", "name exactly one of an accelerator class or a capability"
    if resources.accelerator_class and resources.accelerator_class not in catalogue:
        return (
            "UNKNOWN_ACCELERATOR_CLASS",
            f"accelerator class {resources.accelerator_class!r} is not in the catalogue"
            f" (known: {', '.join(catalogue.ids)})",
        )
    if not spec.runs or not any(run.command or run.image for run in spec.runs):
        return "NO_RUN", "the job has no command or image to run"
    if not timedelta(0) < spec.max_runtime <= MAX_RUNTIME:
        return "BAD_MAX_RUNTIME", f"max runtime must be above 0 and at most {MAX_RUNTIME.days} days"
    return None
