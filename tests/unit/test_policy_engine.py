"""The policy engine, rule by rule: pure decisions with reasons, from (policy, catalogue, job, time, usage).

Each test builds the smallest policy that shows one behaviour, so that a failure names the behaviour broken.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.app.config import REPO_POLICIES
from gateway.identity.principal import Principal
from gateway.jobs.model import Capability, JobSpec, Resources, StackRun
from gateway.policy import FederationPolicy, engine, load_catalogue, parse_policy
from gateway.policy.engine import evaluate, option_verdict
from gateway.policy.quotas import Usage, period_start
from gateway.policy.verdict import judge

CATALOGUE = load_catalogue(REPO_POLICIES / "accelerators.yaml")
WEDNESDAY_NOON = datetime(2026, 1, 7, 12, 0, tzinfo=UTC)
HEADER = """apiVersion: fedgate.io/v1
kind: Federation
metadata: {name: engine}
tenants:
  - name: acme
    projects: [{name: train}, {name: eval}]
"""


def policy(body: str = "", tenants: str = "") -> FederationPolicy:
    text = HEADER + tenants + body
    return parse_policy(text.encode(), "engine.yaml")


def job(cls: str = "nvidia-h100", cards: int = 8, **changes: Any) -> JobSpec:
    base = JobSpec("acme", "train", Resources(cls, None, cards), (StackRun("", "", ("python3", "train.py")),))
    return replace(base, **changes)


def by_capability(**capability: Any) -> JobSpec:
    return job(resources=Resources("", Capability(**capability), 8))


def code(decision: engine.Decision) -> str:
    return decision.reasons[0].code


# ---- who and what ----------------------------------------------------------------------------------------


def test_a_known_tenant_and_project_are_admitted_with_the_policy_version() -> None:
    p = policy()
    decision = evaluate(p, CATALOGUE, job(), WEDNESDAY_NOON)
    assert decision.allowed and decision.classes == ("nvidia-h100",)
    assert decision.policy_version == p.version and decision.reasons[0].code == "ADMITTED"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"tenant": "ghost"}, "UNKNOWN_TENANT"),
        ({"project": "ghost"}, "UNKNOWN_PROJECT"),
        ({"priority_class": "ghost"}, "UNKNOWN_PRIORITY_CLASS"),
        ({"runs": (StackRun("cann", "", ("x",)),)}, "NO_CLASS_CAN_SERVE"),
    ],
)
def test_what_the_policy_does_not_know_is_refused_by_name(changes: dict[str, Any], expected: str) -> None:
    decision = evaluate(policy(), CATALOGUE, job(**changes), WEDNESDAY_NOON)
    assert not decision.allowed and code(decision) == expected and decision.classes == ()


def test_priority_comes_from_the_named_class_or_the_default() -> None:
    p = policy("priority_classes:\n  - {name: low, priority: 10, default: true}\n  - {name: high, priority: 90}\n")
    named = evaluate(p, CATALOGUE, job(priority_class="high"), WEDNESDAY_NOON)
    assert (named.priority, named.priority_class) == (90, "high")
    unnamed = evaluate(p, CATALOGUE, job(), WEDNESDAY_NOON)
    assert (unnamed.priority, unnamed.priority_class) == (10, "low")
    assert evaluate(policy(), CATALOGUE, job(), WEDNESDAY_NOON).priority == 0


# ---- accelerator access ----------------------------------------------------------------------------------

ACCESS = """  - name: limited
    projects: [{name: p}]
    accelerators: {allow: [nvidia-h20, nvidia-a800, nvidia-h100], deny: [nvidia-h100]}
"""


def test_denied_classes_are_refused_and_deny_wins_over_allow() -> None:
    p = policy(tenants=ACCESS)
    refused = evaluate(p, CATALOGUE, job(tenant="limited", project="p"), WEDNESDAY_NOON)
    assert code(refused) == "ACCELERATOR_NOT_ALLOWED" and "limited" in refused.reasons[0].message
    assert not evaluate(p, CATALOGUE, job("ascend-910b", tenant="limited", project="p"), WEDNESDAY_NOON).allowed


def test_a_capability_job_gets_only_the_classes_its_tenant_may_use() -> None:
    p = policy(tenants=ACCESS)
    spec = by_capability(min_memory_gib=80, stacks=("cuda",))
    decision = evaluate(p, CATALOGUE, replace(spec, tenant="limited", project="p"), WEDNESDAY_NOON)
    assert decision.classes == ("nvidia-h20", "nvidia-a800")


def test_deny_star_refuses_every_class() -> None:
    p = policy(tenants="  - name: none\n    projects: [{name: p}]\n    accelerators: {deny: ['*']}\n")
    assert code(evaluate(p, CATALOGUE, job(tenant="none", project="p"), WEDNESDAY_NOON)) == "ACCELERATOR_NOT_ALLOWED"


# ---- rules -----------------------------------------------------------------------------------------------


def rules(*lines: str) -> FederationPolicy:
    return policy("rules:\n" + "".join(f"  - {line}\n" for line in lines))


def test_no_matching_rule_allows() -> None:
    p = rules("{name: other, effect: deny, message: no, match: {projects: [eval]}}")
    assert evaluate(p, CATALOGUE, job(), WEDNESDAY_NOON).allowed


def test_a_matching_deny_refuses_with_its_message_and_name() -> None:
    p = rules("{name: no-h100, effect: deny, message: use smaller cards, match: {classes: [nvidia-h100]}}")
    decision = evaluate(p, CATALOGUE, job(), WEDNESDAY_NOON)
    assert code(decision) == "RULE_DENY" and decision.matched == ("no-h100",)
    assert decision.reasons[0].message == "rule no-h100: use smaller cards"


def test_the_first_matching_allow_or_deny_decides() -> None:
    p = rules(
        "{name: first-allow, effect: allow, message: ok, match: {projects: [train]}}",
        "{name: later-deny, effect: deny, message: no}",
    )
    decision = evaluate(p, CATALOGUE, job(), WEDNESDAY_NOON)
    assert decision.allowed and decision.matched == ("first-allow",)
    assert code(evaluate(p, CATALOGUE, job(project="eval"), WEDNESDAY_NOON)) == "RULE_DENY"


@pytest.mark.parametrize(
    ("requirement", "changes", "unmet"),
    [
        ("{labels: [team]}", {}, "label 'team' is missing"),
        ("{max_runtime_s: 600}", {"max_runtime": timedelta(hours=1)}, "maxRuntime is above 600 s"),
        ("{priority_classes: [low]}", {"priority_class": "high"}, "priority class must be one of low"),
        ("{classification: true}", {}, "declares no data classification"),
    ],
)
def test_every_matching_require_must_hold(requirement: str, changes: dict[str, Any], unmet: str) -> None:
    p = policy(
        "priority_classes: [{name: low, priority: 1}, {name: high, priority: 2}]\n"
        f"rules:\n  - {{name: need, effect: require, message: read the docs, require: {requirement}}}\n"
    )
    decision = evaluate(p, CATALOGUE, job(**changes), WEDNESDAY_NOON)
    assert code(decision) == "RULE_REQUIRE" and unmet in decision.reasons[0].message
    assert decision.reasons[0].message.startswith("rule need: read the docs")


def test_a_met_require_lets_the_job_through() -> None:
    p = rules("{name: need, effect: require, message: m, require: {labels: [team], max_runtime_s: 7200}}")
    decision = evaluate(p, CATALOGUE, job(labels=(("team", "a"),)), WEDNESDAY_NOON)
    assert decision.allowed and decision.matched == ("need",)


def test_a_job_naming_no_class_meets_a_requirement_of_the_default_class() -> None:
    p = policy(
        "priority_classes: [{name: batch, priority: 1, default: true}]\n"
        "rules:\n  - {name: need, effect: require, message: m, require: {priority_classes: [batch]}}\n"
    )
    assert evaluate(p, CATALOGUE, job(), WEDNESDAY_NOON).allowed


@pytest.mark.parametrize(
    ("match", "spec", "matches"),
    [
        ("{tenants: [acme]}", job(), True),
        ("{projects: [eval]}", job(), False),
        ("{labels: {team: a}}", job(labels=(("team", "a"),)), True),
        ("{labels: {team: a}}", job(labels=(("team", "b"),)), False),
        ("{min_cards: 8}", job(cards=8), True),
        ("{min_cards: 9}", job(cards=8), False),
        ("{max_cards: 8}", job(cards=8), True),
        ("{max_cards: 7}", job(cards=8), False),
        ("{classifications: [personal]}", job(data_classification="personal"), True),
        ("{classifications: [personal]}", job(), False),
        ("{tenants: [acme], projects: [eval]}", job(), False),  # every condition must hold
    ],
)
def test_each_match_condition(match: str, spec: JobSpec, matches: bool) -> None:
    p = rules(f"{{name: r, effect: deny, message: m, match: {match}}}")
    assert evaluate(p, CATALOGUE, spec, WEDNESDAY_NOON).allowed is not matches


def test_class_rules_apply_per_class() -> None:
    p = rules("{name: no-h100, effect: deny, message: m, match: {classes: [nvidia-h100, nvidia-h200]}}")
    decision = evaluate(p, CATALOGUE, by_capability(min_memory_gib=80, stacks=("cuda",)), WEDNESDAY_NOON)
    assert decision.allowed and decision.classes == ("nvidia-h20", "nvidia-a100", "nvidia-a800")
    assert decision.matched == ("no-h100",)


@pytest.mark.parametrize(
    ("hours", "days", "when", "matches"),
    [
        ("22:00-06:00", "[]", datetime(2026, 1, 7, 23, 0, tzinfo=UTC), True),
        ("22:00-06:00", "[]", datetime(2026, 1, 8, 5, 59, tzinfo=UTC), True),  # wraps midnight
        ("22:00-06:00", "[]", datetime(2026, 1, 8, 6, 0, tzinfo=UTC), False),  # the end is excluded
        ("22:00-06:00", "[]", datetime(2026, 1, 7, 22, 0, tzinfo=UTC), True),  # the start is included
        ("09:00-17:00", "[]", WEDNESDAY_NOON, True),
        ("09:00-17:00", "[]", datetime(2026, 1, 7, 17, 0, tzinfo=UTC), False),
        ("", "[sat, sun]", datetime(2026, 1, 10, 12, 0, tzinfo=UTC), True),
        ("", "[sat, sun]", WEDNESDAY_NOON, False),
        ("09:00-17:00", "[wed]", WEDNESDAY_NOON, True),
        ("09:00-17:00", "[thu]", WEDNESDAY_NOON, False),
    ],
)
def test_time_windows_in_utc(hours: str, days: str, when: datetime, matches: bool) -> None:
    hours_text = f", hours: '{hours}'" if hours else ""
    p = rules(f"{{name: window, effect: deny, message: m, match: {{days: {days}{hours_text}}}}}")
    assert evaluate(p, CATALOGUE, job(), when).allowed is not matches


def test_region_rules_do_not_decide_admission_but_each_site_at_placement() -> None:
    p = policy(
        "sites: [{name: north, region: cn-north}, {name: east, region: cn-east}]\n"
        "rules:\n  - {name: north-closed, effect: deny, message: closed, match: {regions: [cn-north]}}\n"
    )
    spec = job()
    assert evaluate(p, CATALOGUE, spec, WEDNESDAY_NOON).allowed
    refused = option_verdict(p, CATALOGUE, spec, WEDNESDAY_NOON, Usage(), "north", "nvidia-h100")
    assert refused is not None and refused.code == "RULE_DENY" and refused.site == "north"
    assert option_verdict(p, CATALOGUE, spec, WEDNESDAY_NOON, Usage(), "east", "nvidia-h100") is None


# ---- residency -------------------------------------------------------------------------------------------

RESIDENCY = """sites:
  - {name: sh, region: cn-east}
  - {name: oslo, region: NO}
residency:
  - classification: personal
    allowed: {cn-east: [cn-east], NO: [NO]}
    message: personal data stays home
  - classification: internal
    allowed: {'*': [cn-east]}
"""


@pytest.mark.parametrize(
    ("data", "sh", "oslo"),
    [
        (("personal", "cn-east"), None, "RESIDENCY"),
        (("personal", "NO"), "RESIDENCY", None),
        (("internal", "anywhere"), None, "RESIDENCY"),  # '*': data from any region
        (("public", ""), None, None),  # no entry: not constrained
        (("", ""), None, None),  # no data declared
    ],
)
def test_residency_is_checked_per_site(data: tuple[str, str], sh: str | None, oslo: str | None) -> None:
    p = policy(RESIDENCY)
    spec = job(data_classification=data[0], data_region=data[1])
    assert evaluate(p, CATALOGUE, spec, WEDNESDAY_NOON).allowed
    for site, expected in (("sh", sh), ("oslo", oslo)):
        reason = option_verdict(p, CATALOGUE, spec, WEDNESDAY_NOON, Usage(), site, "nvidia-h100")
        assert (reason.code if reason else None) == expected
    refused = option_verdict(
        p,
        CATALOGUE,
        job(data_classification="personal", data_region="NO"),
        WEDNESDAY_NOON,
        Usage(),
        "sh",
        "nvidia-h100",
    )
    assert refused is not None and "personal data stays home" in refused.message


def test_data_from_a_region_without_an_entry_is_refused_at_admission() -> None:
    decision = evaluate(
        policy(RESIDENCY), CATALOGUE, job(data_classification="personal", data_region="DE"), WEDNESDAY_NOON
    )
    assert code(decision) == "RESIDENCY" and decision.reasons[0].message == "personal data stays home"


# ---- quotas ----------------------------------------------------------------------------------------------

QUOTAS = """  - name: q
    quota: {concurrent_cards: {'*': 64}, card_hours: 1000, period: week}
    projects:
      - {name: small, quota: {concurrent_cards: {nvidia-h100: 16}}}
      - {name: pflops, quota: {concurrent_pflops: 10}}
  - name: s
    quota: {share: 0.5}
    projects: [{name: p}]
projects:
  - name: joint
    members: [{tenant: q}, {tenant: s}]
    quota: {concurrent_cards: {'*': 32}}
"""


def qjob(project: str, cards: int, tenant: str = "q", cls: str = "nvidia-h100") -> JobSpec:
    return job(cls, cards, tenant=tenant, project=project)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (qjob("small", 16), None),
        (qjob("small", 17), "QUOTA_TOO_SMALL"),  # the project's per-class limit
        (qjob("small", 65, cls="nvidia-h20"), "QUOTA_TOO_SMALL"),  # the tenant's '*' limit
        (qjob("small", 64, cls="nvidia-h20"), None),
        (qjob("pflops", 10), None),  # 10 x 0.989 PFLOPS
        (qjob("pflops", 11), "QUOTA_TOO_SMALL"),
        (qjob("joint", 33, tenant="s"), "QUOTA_TOO_SMALL"),  # the joint project's shared limit
        (qjob("joint", 32, tenant="s"), None),
        (qjob("p", 1000, tenant="s"), None),  # a share is not a fixed size: never "too small" at admission
    ],
)
def test_admission_refuses_jobs_that_can_never_fit(spec: JobSpec, expected: str | None) -> None:
    decision = evaluate(policy(tenants=QUOTAS), CATALOGUE, spec, WEDNESDAY_NOON)
    assert (None if decision.allowed else code(decision)) == expected


def test_admission_refuses_when_the_period_budget_is_used_up() -> None:
    p = policy(tenants=QUOTAS)
    used = Usage(card_hours={("q", "small", "week"): 600.0, ("q", "pflops", "week"): 400.0})
    decision = evaluate(p, CATALOGUE, qjob("small", 1), WEDNESDAY_NOON, used)
    assert code(decision) == "QUOTA_EXHAUSTED" and "1000 card-hours this week" in decision.reasons[0].message
    other_period = Usage(card_hours={("q", "small", "month"): 5000.0})
    assert evaluate(p, CATALOGUE, qjob("small", 1), WEDNESDAY_NOON, other_period).allowed


def test_placement_waits_while_live_usage_is_at_the_limit() -> None:
    p, spec = policy(tenants=QUOTAS), qjob("small", 8)

    def verdict(usage: Usage) -> str | None:
        reason = option_verdict(p, CATALOGUE, spec, WEDNESDAY_NOON, usage, "anywhere", "nvidia-h100")
        return reason.code if reason else None

    assert verdict(Usage(held={("q", "small", "nvidia-h100"): 8})) is None
    assert verdict(Usage(held={("q", "small", "nvidia-h100"): 9})) == "QUOTA"  # the project's 16 H100
    assert verdict(Usage(held={("q", "other", "nvidia-h20"): 57})) == "QUOTA"  # the tenant's 64 in all


def test_share_quotas_follow_live_offers() -> None:
    p, spec = policy(tenants=QUOTAS), qjob("p", 8, tenant="s")

    def verdict(usage: Usage) -> str | None:
        reason = option_verdict(p, CATALOGUE, spec, WEDNESDAY_NOON, usage, "anywhere", "nvidia-h100")
        return reason.code if reason else None

    assert verdict(Usage(offered={"nvidia-h100": 16})) is None
    assert verdict(Usage(offered={"nvidia-h100": 15})) == "QUOTA"
    assert verdict(Usage(offered={"nvidia-h100": 32}, held={("s", "p", "nvidia-h100"): 9})) == "QUOTA"
    assert verdict(Usage()) == "QUOTA"


def test_a_joint_project_shares_one_quota_across_tenants() -> None:
    p = policy(tenants=QUOTAS)
    usage = Usage(held={("q", "joint", "nvidia-h100"): 30})
    reason = option_verdict(p, CATALOGUE, qjob("joint", 4, tenant="s"), WEDNESDAY_NOON, usage, "x", "nvidia-h100")
    assert reason is not None and reason.code == "QUOTA" and "joint project joint" in reason.message
    # ...and the tenant's own quota does not apply to it: s's share of nothing offered is no obstacle.
    assert option_verdict(p, CATALOGUE, qjob("joint", 2, tenant="s"), WEDNESDAY_NOON, usage, "x", "nvidia-h100") is None


def test_periods_start_in_utc() -> None:
    now = datetime(2026, 1, 7, 15, 30, tzinfo=UTC)
    assert period_start("day", now) == datetime(2026, 1, 7, tzinfo=UTC)
    assert period_start("week", now) == datetime(2026, 1, 5, tzinfo=UTC)
    assert period_start("month", now) == datetime(2026, 1, 1, tzinfo=UTC)


# ---- access control of the caller (as the gateway checks it before admission) -----------------------------

MEMBERS = """  - name: listed
    projects: [{name: a}, {name: b}]
    members:
      - {user: bob, role: member}
      - {user: carol, role: viewer}
      - {user: dave, role: member, projects: [a]}
"""


@pytest.mark.parametrize(
    ("user", "project", "expected"),
    [
        ("bob", "a", None),
        ("carol", "a", "READ_ONLY"),
        ("dave", "a", None),
        ("dave", "b", "NOT_A_MEMBER"),
        ("eve", "a", "NOT_A_MEMBER"),
    ],
)
def test_members_act_viewers_and_outsiders_do_not(user: str, project: str, expected: str | None) -> None:
    p = policy(tenants=MEMBERS)
    caller = Principal.user("engine", "listed", user)
    verdict = judge(p, CATALOGUE, job(tenant="listed", project=project), caller, WEDNESDAY_NOON)
    assert (None if verdict.allowed else verdict.reasons[0].code) == expected


# ---- failing closed --------------------------------------------------------------------------------------


def test_an_error_inside_evaluation_denies(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> bool:
        raise ZeroDivisionError("a bug")

    p = rules("{name: r, effect: allow, message: m}")
    monkeypatch.setattr(engine, "matches", broken)
    decision = evaluate(p, CATALOGUE, job(), WEDNESDAY_NOON)
    assert not decision.allowed and code(decision) == "EVALUATION_ERROR"
    assert "ZeroDivisionError" in decision.reasons[0].message and decision.policy_version == p.version


def test_an_error_inside_a_site_verdict_refuses_the_site(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> object:
        raise KeyError("surprise")

    monkeypatch.setattr(engine, "_residency_regions", broken)
    reason = option_verdict(policy(), CATALOGUE, job(), WEDNESDAY_NOON, Usage(), "s", "nvidia-h100")
    assert reason is not None and reason.code == "EVALUATION_ERROR" and reason.site == "s"


def test_a_job_refused_on_every_class_it_could_use_carries_each_refusal_not_only_the_first() -> None:
    p = rules(
        "{name: no-hopper, effect: deny, message: not on hopper,"
        " match: {classes: [nvidia-h100, nvidia-h200, nvidia-h20]}}",
        "{name: no-ampere, effect: deny, message: not on ampere, match: {classes: [nvidia-a100, nvidia-a800]}}",
    )
    decision = evaluate(p, CATALOGUE, by_capability(min_memory_gib=80, stacks=("cuda",)), WEDNESDAY_NOON)
    assert not decision.allowed
    # Each rule's refusal once (the classes one rule refuses give one reason), in class order.
    assert [r.message for r in decision.reasons] == ["rule no-hopper: not on hopper", "rule no-ampere: not on ampere"]
