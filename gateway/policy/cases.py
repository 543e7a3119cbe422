"""Tables of expected decisions (`kind: PolicyCases`): a job, who submits it, when and under what live usage,
and what the federation must decide. `fedgate policy test` runs them; the gateway itself never does.

Owns: reading a cases file strictly (jobs inline or from files; paths relative to the cases file) and comparing
what the federation would decide (`gateway.policy.verdict.judge`) with each expectation. It prints nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from fedgate.common.fields import MISSING, FieldReader
from fedgate.common.yaml import KeyPath, dump_yaml, format_path, load_yaml
from gateway.errors import ConfigError, GatewayError
from gateway.identity.principal import Principal
from gateway.jobs.model import JobSpec, Reason
from gateway.jobs.specfile import load_job_spec, parse_job_spec
from gateway.policy.catalogue import Catalogue
from gateway.policy.document import NAME, NAME_HINT, REPO_POLICIES, FederationPolicy, load_catalogue, load_policy
from gateway.policy.engine import option_verdict
from gateway.policy.quotas import Usage
from gateway.policy.verdict import Verdict, default_caller, judge

API_VERSION = "fedgate.io/v1"
KIND = "PolicyCases"
DEFAULT_CATALOGUE = REPO_POLICIES / "accelerators.yaml"
# Cases without `time:` are judged at this instant: a Wednesday noon, outside any night or weekend window.
DEFAULT_TIME = datetime(2026, 1, 7, 12, 0, tzinfo=UTC)
DECISIONS = ("allow", "deny")
CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
CASE_NAME = re.compile(r"[^\n]{1,200}")
CALLER = re.compile(r"admin(/[a-z0-9-]+)?|[a-z0-9-]+/[a-z0-9-]+")
_INLINE = "<inline job>"


@dataclass(frozen=True)
class SiteExpectation:
    decision: str  # allow | deny
    reason: str = ""  # a reason code the refusal must carry
    accelerator_class: str = ""  # the class to ask about; default: the first class admission allowed


@dataclass(frozen=True)
class Expectation:
    decision: str  # allow | deny
    reason: str = ""  # the code of the first reason
    classes: tuple[str, ...] | None = None  # exactly these classes, in catalogue order
    rule: str = ""  # a rule that must have matched
    priority: int | None = None
    sites: Mapping[str, SiteExpectation] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyCase:
    name: str
    line: int
    spec: JobSpec
    caller: Principal
    time: datetime
    usage: Usage
    expect: Expectation


@dataclass(frozen=True)
class PolicyCases:
    source: str
    policy: FederationPolicy
    catalogue: Catalogue
    cases: tuple[PolicyCase, ...]


# ---- running ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseResult:
    source: str
    line: int
    name: str
    problems: tuple[str, ...]  # empty: the case passed
    verdict: Verdict

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class CasesRun:
    source: str
    results: tuple[CaseResult, ...] = ()
    error: str = ""  # the file (or a file it names) could not be loaded: `file:line: problem`


def find_cases(root: Path) -> list[Path]:
    """Every `*.cases.yaml` under `root` (or `root` itself when it is a file), in path order."""
    return [root] if root.is_file() else sorted(root.rglob("*.cases.yaml"))


def run_cases(path: Path) -> CasesRun:
    try:
        table = load_cases(path)
    except ConfigError as exc:
        return CasesRun(str(path), error=exc.message)
    return CasesRun(str(path), tuple(run_case(table, case) for case in table.cases))


def run_case(table: PolicyCases, case: PolicyCase) -> CaseResult:
    policy, catalogue = table.policy, table.catalogue
    verdict = judge(policy, catalogue, case.spec, case.caller, case.time, case.usage)
    want, problems = case.expect, []
    got = "allow" if verdict.allowed else "deny"
    first = verdict.reasons[0] if verdict.reasons else Reason("policy", "NONE", "no reason given")
    if got != want.decision:
        problems.append(f"expected {want.decision}, got {got} ({first.code}: {first.message})")
    elif want.reason and first.code != want.reason:
        problems.append(f"expected reason {want.reason}, got {first.code}: {first.message}")
    if want.classes is not None and verdict.classes != want.classes:
        problems.append(f"expected classes [{', '.join(want.classes)}], got [{', '.join(verdict.classes)}]")
    if want.rule and want.rule not in verdict.matched:
        problems.append(f"expected rule {want.rule} to match; matched: {', '.join(verdict.matched) or 'none'}")
    if want.priority is not None and verdict.priority != want.priority:
        problems.append(f"expected priority {want.priority}, got {verdict.priority}")
    for site, site_want in want.sites.items():
        cls = site_want.accelerator_class or next(iter(verdict.classes or catalogue.classes_for(case.spec)), "")
        reason = option_verdict(policy, catalogue, case.spec, case.time, case.usage, site, cls)
        site_got = "allow" if reason is None else "deny"
        if site_got != site_want.decision:
            why = f" ({reason.code}: {reason.message})" if reason is not None else ""
            problems.append(f"site {site} ({cls}): expected {site_want.decision}, got {site_got}{why}")
        elif reason is not None and site_want.reason and reason.code != site_want.reason:
            problems.append(f"site {site} ({cls}): expected {site_want.reason}, got {reason.code}: {reason.message}")
    return CaseResult(table.source, case.line, case.name, tuple(problems), verdict)


# ---- reading ---------------------------------------------------------------------------------------------


def load_cases(path: Path) -> PolicyCases:
    """A cases file with its policy, catalogue and jobs loaded; ConfigError naming file and line otherwise."""
    fields = FieldReader(load_yaml(path, error=ConfigError))
    top = {"apiVersion", "kind", "policy", "catalogue", "time", "cases"}
    fields.mapping((), allowed=top, required={"apiVersion", "kind", "policy", "cases"})
    if fields.string(("apiVersion",)) != API_VERSION:
        raise fields.error(("apiVersion",), f"must be {API_VERSION}")
    if fields.string(("kind",)) != KIND:
        raise fields.error(("kind",), f"must be {KIND} in a cases file")
    policy = load_policy(_file(fields, ("policy",), path.parent))
    has_catalogue = fields.value(("catalogue",)) is not MISSING
    catalogue = load_catalogue(_file(fields, ("catalogue",), path.parent) if has_catalogue else DEFAULT_CATALOGUE)
    default_time = _time(fields, ("time",), DEFAULT_TIME)
    items = fields.sequence(("cases",))
    if not items:
        raise fields.error(("cases",), "has no cases", "add at least one case with a job and an expect")
    cases: list[PolicyCase] = []
    for i in range(len(items)):
        case = _case(fields, ("cases", i), path.parent, policy, catalogue, default_time)
        if any(c.name == case.name for c in cases):
            raise fields.error(("cases", i, "name"), f"case {case.name!r} is defined twice", "give each a new name")
        cases.append(case)
    return PolicyCases(str(path), policy, catalogue, tuple(cases))


def _file(fields: FieldReader, path: KeyPath, base: Path) -> Path:
    resolved = base / fields.string(path)
    if not resolved.is_file():
        raise fields.error(path, f"file {resolved} does not exist", "paths are relative to the cases file")
    return resolved


def _time(fields: FieldReader, path: KeyPath, default: datetime) -> datetime:
    if fields.value(path) is MISSING:
        return default
    text = fields.string(path)
    hint = "write an ISO-8601 UTC time such as 2026-01-10T23:30:00Z"
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise fields.error(path, f"{text!r} is not a time", hint) from None
    if value.tzinfo is None:
        raise fields.error(path, f"{text!r} has no time zone", hint)
    return value.astimezone(UTC)


def _case(
    fields: FieldReader, at: KeyPath, base: Path, policy: FederationPolicy, catalogue: Catalogue, when: datetime
) -> PolicyCase:
    keys = {"name", "description", "as", "time", "job", "job_file", "usage", "expect"}
    data = fields.mapping(at, allowed=keys, required={"name", "expect"})
    name = fields.string((*at, "name"), pattern=CASE_NAME, hint="one line of up to 200 characters")
    fields.string((*at, "description"), default="")
    caller_text = fields.string((*at, "as"), default="", pattern=CALLER, hint="write tenant/user, admin or admin/name")
    tenant = caller_text.split("/")[0] if "/" in caller_text and not caller_text.startswith("admin") else ""
    if ("job" in data) == ("job_file" in data):
        raise fields.error(at, "give exactly one of job and job_file", "write the job inline or name its file")
    if "job" in data:
        spec = _inline_job(fields, (*at, "job"), tenant)
    else:
        spec = load_job_spec(_file(fields, (*at, "job_file"), base), default_tenant=tenant)
    try:
        if caller_text.startswith("admin"):
            caller = Principal.admin(policy.federation, caller_text.partition("/")[2] or "policy-admin")
        elif caller_text:
            caller = Principal.user(policy.federation, tenant, caller_text.split("/")[1])
        else:
            caller = default_caller(policy, spec)
    except GatewayError as exc:
        raise fields.error((*at, "as"), exc.message) from None
    return PolicyCase(
        name,
        fields.doc.line(at),
        spec,
        caller,
        _time(fields, (*at, "time"), when),
        _usage(fields, (*at, "usage")),
        _expectation(fields, (*at, "expect"), policy, catalogue),
    )


def _inline_job(fields: FieldReader, at: KeyPath, default_tenant: str) -> JobSpec:
    """An inline job, checked by the job parser; its errors point at the line in the cases file."""
    data = fields.mapping(at, allowed=("apiVersion", "kind", "metadata", "spec"), required=("metadata", "spec"))
    text = dump_yaml({"apiVersion": API_VERSION, "kind": "Job", **data})
    try:
        return parse_job_spec(text, _INLINE, default_tenant=default_tenant)
    except ConfigError as exc:
        # Map the line in the re-written job back to the key path, and that to the line in this file.
        line = int(exc.metadata.get("line") or 0)
        inner = load_yaml(text, _INLINE, error=ConfigError).lines
        path = max((p for p, n in inner.items() if n == line), key=len, default=())
        problem = re.sub(rf"^{re.escape(_INLINE)}(:\d+)?: ", "", exc.message)
        where = (*at, *path)
        raise ConfigError(
            f"{fields.doc.where(where)}: {format_path(at)}: {problem}",
            metadata={"file": fields.doc.source, "line": str(fields.doc.line(where))},
        ) from None


def _usage(fields: FieldReader, at: KeyPath) -> Usage:
    if not fields.mapping(at, allowed=("held", "card_hours", "offered"), optional=True):
        return Usage()
    held: dict[tuple[str, str, str], int] = {}
    for i in range(len(fields.sequence((*at, "held"), optional=True))):
        item = (*at, "held", i)
        fields.mapping(item, allowed=("tenant", "project", "class", "cards"), required=("tenant", "project", "class"))
        key = tuple(fields.string((*item, k), pattern=NAME, hint=NAME_HINT) for k in ("tenant", "project", "class"))
        held[(key[0], key[1], key[2])] = fields.integer((*item, "cards"), minimum=0)
    hours: dict[tuple[str, str, str], float] = {}
    for i in range(len(fields.sequence((*at, "card_hours"), optional=True))):
        item = (*at, "card_hours", i)
        fields.mapping(item, allowed=("tenant", "project", "period", "hours"), required=("tenant", "project", "hours"))
        period = fields.string((*item, "period"), default="month")
        if period not in ("day", "week", "month"):
            raise fields.error((*item, "period"), f"{period!r} is not a period", "use day, week or month")
        tenant = fields.string((*item, "tenant"), pattern=NAME, hint=NAME_HINT)
        project = fields.string((*item, "project"), pattern=NAME, hint=NAME_HINT)
        hours[(tenant, project, period)] = fields.number((*item, "hours"), minimum=0)
    offered_at = (*at, "offered")
    offered = {
        cls: fields.integer((*offered_at, cls), minimum=0)
        for cls in fields.mapping(offered_at, allowed=fields.value(offered_at) or (), optional=True)
    }
    return Usage(held, hours, offered)


def _expectation(fields: FieldReader, at: KeyPath, policy: FederationPolicy, catalogue: Catalogue) -> Expectation:
    keys = {"decision", "reason", "classes", "rule", "priority", "sites"}
    data = fields.mapping(at, allowed=keys, required={"decision"})
    classes = None
    if "classes" in data:
        classes = fields.strings((*at, "classes"))
        for i, cls in enumerate(classes):
            if cls not in catalogue:
                raise fields.error((*at, "classes", i), f"class {cls!r} is not in the catalogue")
    rule = fields.string((*at, "rule"), default="")
    if rule and rule not in {r.name for r in policy.rules}:
        raise fields.error((*at, "rule"), f"the policy has no rule {rule!r}", "use the name of one of its rules")
    sites: dict[str, SiteExpectation] = {}
    sites_at = (*at, "sites")
    for site in fields.mapping(sites_at, allowed=fields.value(sites_at) or (), optional=True):
        if site not in policy.sites:
            known = ", ".join(sorted(policy.sites)) or "none"
            raise fields.error((*sites_at, site), f"site {site!r} is not in the policy", f"known sites: {known}")
        sites[site] = _site_expectation(fields, (*sites_at, site), catalogue)
    return Expectation(
        _decision(fields, (*at, "decision")),
        fields.string((*at, "reason"), default="", pattern=CODE, hint="a reason code such as RULE_DENY"),
        classes,
        rule,
        fields.integer((*at, "priority"), minimum=0) if "priority" in data else None,
        sites,
    )


def _site_expectation(fields: FieldReader, at: KeyPath, catalogue: Catalogue) -> SiteExpectation:
    if isinstance(fields.value(at), str):
        return SiteExpectation(_decision(fields, at))
    fields.mapping(at, allowed=("decision", "reason", "class"), required=("decision",))
    cls = fields.string((*at, "class"), default="")
    if cls and cls not in catalogue:
        raise fields.error((*at, "class"), f"class {cls!r} is not in the catalogue")
    reason = fields.string((*at, "reason"), default="", pattern=CODE, hint="a reason code such as RESIDENCY")
    return SiteExpectation(_decision(fields, (*at, "decision")), reason, cls)


def _decision(fields: FieldReader, at: KeyPath) -> str:
    value = fields.string(at)
    if value not in DECISIONS:
        raise fields.error(at, f"{value!r} is not a decision", "use allow or deny")
    return value
