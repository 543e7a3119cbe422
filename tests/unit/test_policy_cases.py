"""`fedgate policy test|check|explain`: the shipped tables of expected decisions all pass (this is what makes
`make test` run them), a wrong expectation or a broken file fails with file and line, and `check` and
`explain` answer with trustworthy exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.app.config import REPO_POLICIES
from gateway.cli.policy import check_file, main
from gateway.policy.cases import find_cases, load_cases, run_cases

REPO = REPO_POLICIES.parent
EXAMPLES = REPO_POLICIES / "examples"
JOB = """\
    job:
      metadata: {tenant: deepsea-ai, project: pretrain}
      spec:
        resources: {class: nvidia-h100, cards: 64}
        runs: [{stack: cuda, command: [python3, train.py]}]
"""


def _cases(tmp_path: Path, body: str, policy: Path = EXAMPLES / "quotas.yaml") -> Path:
    path = tmp_path / "my.cases.yaml"
    path.write_text(
        f"apiVersion: fedgate.io/v1\nkind: PolicyCases\npolicy: {policy}\n"
        f"catalogue: {REPO_POLICIES / 'accelerators.yaml'}\ncases:\n{body}"
    )
    return path


# ---- the shipped tables ----------------------------------------------------------------------------------


def test_policy_test_runs_every_shipped_table_and_all_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(REPO_POLICIES)]) == 0
    out = capsys.readouterr().out.splitlines()
    passed = [line for line in out if line.startswith("PASS ")]
    assert len(passed) >= 25
    assert out[-1] == f"{len(passed)} passed, 0 failed"


def test_the_fedgate_command_runs_the_tables_from_the_repository_root() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fedgate.cli", "policy", "test", "policies", "-o", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["failed"] == 0 and report["passed"] >= 25


FEDERATION_EXAMPLES = sorted(p for p in EXAMPLES.glob("*.yaml") if check_file(p)[0] == "Federation")


@pytest.mark.parametrize("policy", FEDERATION_EXAMPLES, ids=lambda p: p.name)
def test_every_example_has_a_table_of_at_least_five_cases_allowing_and_denying(policy: Path) -> None:
    table = load_cases(policy.with_name(policy.stem + ".cases.yaml"))
    assert len(table.cases) >= 5
    assert {case.expect.decision for case in table.cases} == {"allow", "deny"}


def test_the_four_examples_of_the_issue_are_there() -> None:
    assert len(FEDERATION_EXAMPLES) >= 4
    names = {p.name for p in find_cases(EXAMPLES)}
    assert {f"{topic}.cases.yaml" for topic in ("quotas", "residency", "accelerator-access", "time-windows")} <= names
    assert (REPO_POLICIES / "federation.cases.yaml") in find_cases(REPO_POLICIES)


# ---- failures are told precisely -------------------------------------------------------------------------


def test_a_wrong_expectation_fails_with_its_line_and_what_happened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _cases(
        tmp_path,
        f"  - name: fits\n{JOB}    expect: {{decision: allow}}\n"
        f"  - name: wrongly expected to be refused\n{JOB}    expect: {{decision: deny, reason: QUOTA_TOO_SMALL}}\n"
        f"  - name: wrong site verdict\n{JOB}    expect: {{decision: allow, sites: {{centre-sh: deny}}}}\n",
    )
    assert main(["test", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {path}:13: wrongly expected to be refused: expected deny, got allow (ADMITTED:" in out
    assert f"FAIL {path}:20: wrong site verdict: site centre-sh (nvidia-h100): expected deny, got allow" in out
    assert out.rstrip().endswith("1 passed, 2 failed")


def test_a_broken_cases_file_fails_the_run_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _cases(tmp_path, f"  - name: typo\n{JOB}    expect: {{decison: allow}}\n")
    assert main(["test", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {path}:12: cases[0].expect.decison: unknown key 'decison'" in out
    assert "0 passed, 1 failed" in out


def test_an_error_in_an_inline_job_points_at_its_line_in_the_cases_file(tmp_path: Path) -> None:
    path = _cases(
        tmp_path, "  - name: bad job\n" + JOB.replace("cards: 64", "cards: '64'") + "    expect: {decision: allow}\n"
    )
    error = run_cases(path).error
    assert error.startswith(f"{path}:10: cases[0].job: spec.resources.cards: must be an integer"), error


@pytest.mark.parametrize(
    ("expect", "line", "words"),
    [
        ("{decision: allow, sites: {nowhere: allow}}", 12, "site 'nowhere' is not in the policy"),
        ("{decision: allow, rule: no-such-rule}", 12, "the policy has no rule 'no-such-rule'"),
        ("{decision: allow, classes: [nvidia-h1000]}", 12, "class 'nvidia-h1000' is not in the catalogue"),
        ("{decision: maybe}", 12, "'maybe' is not a decision"),
        ("{decision: deny, reason: quota}", 12, "'quota' is not valid"),
    ],
)
def test_expectations_naming_what_does_not_exist_are_refused(
    tmp_path: Path, expect: str, line: int, words: str
) -> None:
    error = run_cases(_cases(tmp_path, f"  - name: c\n{JOB}    expect: {expect}\n")).error
    assert error.startswith(f"{tmp_path / 'my.cases.yaml'}:{line}: ") and words in error, error


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("    as: alice\n", "'alice' is not valid"),
        ("    time: '2026-01-07 12:00'\n", "has no time zone"),
        ("    time: tomorrow\n", "'tomorrow' is not a time"),
        ("    job_file: nowhere.yaml\n", "give exactly one of job and job_file"),
        ("    usage: {held: [{tenant: a, project: b, class: c, cards: -1}]}\n", "must be at least 0"),
    ],
)
def test_bad_case_fields_are_refused(tmp_path: Path, extra: str, words: str) -> None:
    error = run_cases(_cases(tmp_path, f"  - name: c\n{extra}{JOB}    expect: {{decision: allow}}\n")).error
    assert words in error, error


def test_case_names_are_unique(tmp_path: Path) -> None:
    case = f"  - name: same\n{JOB}    expect: {{decision: allow}}\n"
    assert "case 'same' is defined twice" in run_cases(_cases(tmp_path, case + case)).error


def test_no_tables_is_a_failure_not_a_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(tmp_path)]) == 1
    assert "0 passed, 0 failed (no *.cases.yaml under" in capsys.readouterr().out


# ---- check -----------------------------------------------------------------------------------------------


def test_check_loads_each_kind_with_its_loader(capsys: pytest.CaptureFixture[str]) -> None:
    files = [
        REPO_POLICIES / "federation.yaml",
        REPO_POLICIES / "accelerators.yaml",
        REPO_POLICIES / "federation.cases.yaml",
        REPO / "examples" / "jobs" / "eval-h100.yaml",
    ]
    assert main(["check", *map(str, files)]) == 0
    out = capsys.readouterr().out
    for path, kind in zip(files, ["Federation", "AcceleratorCatalogue", "PolicyCases", "Job"], strict=True):
        assert f"{path}: ok ({kind})" in out


def test_check_prints_file_line_message_per_invalid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: fedgate.io/v1\nkind: Federation\nmetadata: {name: x}\ntenants:\n  - nam: a\n")
    job = tmp_path / "job.yaml"
    job.write_text("apiVersion: fedgate.io/v1\nkind: Job\nmetadata: {tenant: a, project: b}\nspec: {}\n")
    other = tmp_path / "other.yaml"
    other.write_text("kind: Policy\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [\n")
    assert main(["check", "-q", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{broken}:2: ")
    assert lines[1].startswith(f"{job}:4: spec: missing required key")
    assert lines[2].startswith(f"{other}:1: kind: kind 'Policy': not a file fedgate policy check knows")
    assert lines[3].startswith(f"{policy}:5: tenants[0].nam: unknown key 'nam'")
    assert len(lines) == 4


def test_files_of_other_components_are_named_and_left_to_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = tmp_path / "centre.agent.yaml"
    agent.write_text("apiVersion: fedgate.io/v1\nkind: Agent\n")
    cases = tmp_path / "centre.cases.yaml"
    cases.write_text("apiVersion: fedgate.io/v1\nkind: AgentPolicyCases\n")
    assert main(["check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{agent}: skipped (a site agent's config" in out and f"{cases}: skipped (a centre's cases" in out
    policy_cases = _cases(tmp_path, f"  - name: fits\n{JOB}    expect: {{decision: allow}}\n")
    # A centre's table is run by the agent's own command; this one is incomplete, so it fails there.
    assert main(["test", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"PASS {policy_cases}: fits" in out
    assert "FAIL" in out and str(cases) in out and out.rstrip().endswith("1 passed, 1 failed")


def test_check_output_for_scripts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(REPO_POLICIES / "federation.yaml"), "-o", "json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row == {"file": str(REPO_POLICIES / "federation.yaml"), "kind": "Federation", "valid": True, "problem": ""}


# ---- explain ---------------------------------------------------------------------------------------------


def test_explain_shows_the_decision_reasons_classes_and_caller(capsys: pytest.CaptureFixture[str]) -> None:
    job = REPO_POLICIES.parent / "examples" / "jobs" / "eval-h100.yaml"
    args = ["explain", "-f", str(job), "--policy", str(EXAMPLES / "residency.yaml"), "--as", "admin"]
    assert main([*args, "--time", "2026-01-07T12:00:00Z"]) == 1  # panda-lm is no tenant of that federation
    assert "UNKNOWN_TENANT" in capsys.readouterr().out
    assert main(["explain", "-f", str(job), "--time", "2026-01-07T12:00:00Z", "-o", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["decision"] == "allow" and report["classes"] == ["nvidia-h100"]
    assert report["caller"].endswith("/tenant/panda-lm/user/bob")
    assert report["reasons"][0]["code"] == "ADMITTED"


def test_explain_lists_site_verdicts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(
        "apiVersion: fedgate.io/v1\nkind: Job\nmetadata: {tenant: health-ai, project: clinical-notes}\n"
        "spec:\n  resources: {class: ascend-910b, cards: 4}\n  runs: [{stack: cann, command: [x]}]\n"
        "  data: {classification: personal, region: cn-east}\n"
    )
    assert main(["explain", "-f", str(job), "--policy", str(EXAMPLES / "residency.yaml")]) == 0
    out = capsys.readouterr().out
    assert "decision:" in out and "allow" in out
    oslo = next(line for line in out.splitlines() if line.startswith("oslo"))
    assert "NO" in oslo and "deny" in oslo and "RESIDENCY" in oslo
    assert main(["explain", "-f", str(job), "--policy", str(EXAMPLES / "residency.yaml"), "--as", "x"]) == 2
    assert "write tenant/user" in capsys.readouterr().err


def test_explain_as_a_viewer_is_refused_like_the_gateway_would(capsys: pytest.CaptureFixture[str]) -> None:
    job = REPO_POLICIES.parent / "examples" / "jobs" / "eval-h100.yaml"
    assert main(["explain", "-f", str(job), "--as", "panda-lm/carol", "-o", "yaml"]) == 1
    assert "READ_ONLY" in capsys.readouterr().out


def test_explain_of_an_invalid_job_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("kind: Job\n")
    assert main(["explain", "-f", str(job)]) == 2
    assert f"{job}:" in capsys.readouterr().err
