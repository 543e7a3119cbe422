"""Tables of expected decisions for a centre's own policy (`kind: AgentPolicyCases`), and running them.

Owns: reading a cases file strictly (the agent config it names is relative to the cases file and is read
without checking that its TLS files exist), and comparing what the centre's terms decide at each case's
instant (`agents.policy.terms`; the same judgement the runtime makes on a launch) with each expectation. It prints
nothing: `fedgate agent policy test` shows the results.

    apiVersion: fedgate.io/v1
    kind: AgentPolicyCases
    agent: centre-offers.agent.yaml
    cases:
      - name: weekday daytime offer is 30 %
        time: "2026-01-07T10:00:00+08:00"
        expect_offers: {ascend-910b: 4}
      - name: a tenant the centre does not serve is refused
        time: "2026-01-07T10:00:00+08:00"
        launch: {tenant: other, project: x, class: ascend-910b, cards: 1, image: registry.example.org/a:1}
        in_use: {ascend-910b: 0}        # optional: cards federated jobs already hold
        expect: refuse
        reason: tenant other            # optional: a substring of the refusal
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from agents.core.config import AgentConfig, load_agent_config
from agents.core.devices import DevicePool
from agents.core.model import PoolSpec
from agents.errors import ConfigError, InsufficientCapacity
from agents.policy.terms import LaunchRequest, effective_offer, judge_launch
from fedgate.common.sections import Section
from fedgate.common.yaml import load_yaml

API_VERSION = "fedgate.io/v1"
KIND = "AgentPolicyCases"
EXPECTATIONS = ("accept", "refuse")


@dataclass(frozen=True)
class AgentPolicyCase:
    """One row: at `time`, either these offers, or this launch accepted or refused."""

    name: str
    line: int
    time: datetime
    expect_offers: Mapping[str, int] | None = None
    launch: LaunchRequest | None = None
    in_use: Mapping[str, int] = field(default_factory=dict)
    expect: str = ""
    """accept or refuse, for a launch case."""
    reason: str = ""
    """A substring the refusal must contain, for `expect: refuse`."""


@dataclass(frozen=True)
class CaseResult:
    source: str
    line: int
    name: str
    passed: bool
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class CasesRun:
    """Every case of one file, or the error that stopped the file from being read."""

    source: str
    results: tuple[CaseResult, ...] = ()
    error: str = ""


def run_cases_file(path: Path) -> CasesRun:
    """Read one cases file and its agent config, and run every case. Never raises for a bad file: the error
    is in the result, so one broken file does not hide the others."""
    try:
        config, cases = load_cases(path)
    except ConfigError as exc:
        return CasesRun(str(path), error=exc.message)
    return CasesRun(str(path), tuple(run_case(config, case, str(path)) for case in cases))


def run_case(config: AgentConfig, case: AgentPolicyCase, source: str = "") -> CaseResult:
    problems: list[str] = []
    pools = {p.accelerator_class: p for p in config.pools}
    for cls, wanted in (case.expect_offers or {}).items():
        got = effective_offer(config.policy, pools[cls], case.time)
        if got != wanted:
            window = config.policy.window(cls, case.time)
            why = f" (window {window.describe()}, share {window.share:g})" if window else " (no schedule)"
            problems.append(f"{cls}: expected an offer of {wanted} cards, got {got}{why}")
    if case.launch is not None:
        refusal = decide_launch(config, pools, case.launch, case.time, case.in_use)
        if case.expect == "accept" and refusal:
            problems.append(f"expected accept, but it is refused: {refusal}")
        elif case.expect == "refuse" and not refusal:
            problems.append("expected refuse, but the launch is accepted")
        elif case.expect == "refuse" and case.reason and case.reason not in refusal:
            problems.append(f"refused, but the reason {refusal!r} does not contain {case.reason!r}")
    return CaseResult(source, case.line, case.name, not problems, tuple(problems))


def decide_launch(
    config: AgentConfig,
    pools: Mapping[str, PoolSpec],
    launch: LaunchRequest,
    at: datetime,
    in_use: Mapping[str, int],
) -> str:
    """What the runtime would answer to this launch on an otherwise idle site ('' = it starts): the same
    checks in the same order (pool, the centre's terms, free devices), with the same messages."""
    pool = pools.get(launch.accelerator_class)
    if pool is None:
        offered = ", ".join(sorted(pools)) or "nothing"
        return f"site {config.site} has no pool of {launch.accelerator_class}; it offers {offered}"
    held = in_use.get(pool.accelerator_class, 0)
    refusal = judge_launch(config.policy, pool, launch, at, held)
    if refusal is not None:
        return refusal.message
    devices = DevicePool(pool)
    try:
        devices.allocate(min(held, pool.offered))
        devices.allocate(launch.cards)
    except InsufficientCapacity as exc:
        return exc.message
    return ""


# ---- reading --------------------------------------------------------------------------------------------


def load_cases(path: Path) -> tuple[AgentConfig, tuple[AgentPolicyCase, ...]]:
    """Read a cases file and the agent config it names. Raises ConfigError naming file, line and the fix."""
    source = path.expanduser().absolute()
    root = Section(load_yaml(source, error=ConfigError))
    for key, wanted in (("apiVersion", API_VERSION), ("kind", KIND)):
        if (value := root.text(key)) != wanted:
            root.fail(f"{key} must be {wanted!r}, got {value!r}", key)
    config_path = source.parent / root.text("agent")
    if not config_path.is_file():
        root.fail(f"agent config {config_path} does not exist; `agent:` is relative to this file", "agent")
    config = load_agent_config(config_path, validate_files=False)
    sections = root.sections("cases")
    if not sections:
        root.fail("cases is empty; add at least one case", "cases")
    cases = tuple(_case(section, config) for section in sections)
    root.finish()
    return config, cases


def _case(section: Section, config: AgentConfig) -> AgentPolicyCase:
    name = section.text("name")
    time = _time(section)
    has_offers, has_launch = section.has("expect_offers"), section.has("launch")
    if has_offers == has_launch:
        section.fail(f"case {name!r} needs either expect_offers or a launch with expect (one of them)")
    pools = [p.accelerator_class for p in config.pools]
    if has_offers:
        offers = _class_counts(section, "expect_offers", pools)
        section.finish()
        return AgentPolicyCase(name, section.line, time, expect_offers=offers)
    launch = _launch(section.section("launch"))
    in_use = _class_counts(section, "in_use", pools) if section.has("in_use") else {}
    expect = section.text("expect")
    if expect not in EXPECTATIONS:
        section.fail(f"expect must be accept or refuse, got {expect!r}", "expect")
    reason = section.text("reason", "")
    if reason and expect != "refuse":
        section.fail("reason goes with expect: refuse only; remove it or expect refuse", "reason")
    section.finish()
    return AgentPolicyCase(name, section.line, time, launch=launch, in_use=in_use, expect=expect, reason=reason)


def _time(section: Section) -> datetime:
    text = section.text("time")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        section.fail(f'time {text!r} is not ISO-8601; write e.g. "2026-01-07T10:00:00+08:00"', "time")
    if value.tzinfo is None:
        section.fail(f"time {text!r} has no offset; add one, e.g. +08:00 or Z for UTC", "time")
    return value


def _class_counts(section: Section, key: str, pools: list[str]) -> dict[str, int]:
    counts = section.section(key)
    result = {}
    for cls in counts.key_names():
        if cls not in pools:
            counts.fail(f"{counts.path(cls)}: the agent config has no pool {cls!r}; pools: {', '.join(pools)}", cls)
        result[cls] = counts.integer(cls, minimum=0)
    counts.finish()
    if not result and key == "expect_offers":
        section.fail("expect_offers is empty; name at least one pool class and its expected cards", key)
    return result


def _launch(section: Section) -> LaunchRequest:
    launch = LaunchRequest(
        tenant=section.text("tenant"),
        project=section.text("project"),
        accelerator_class=section.text("class"),
        cards=section.integer("cards", minimum=1),
        image=section.text("image", ""),
    )
    section.finish()
    return launch
