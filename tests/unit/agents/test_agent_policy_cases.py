"""`fedgate agent policy test`: the shipped table passes, failures are told precisely, bad tables are refused
with file and line, and the command works from any working directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agents.cli import main as cli
from agents.policy.cases import load_cases, run_cases_file

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "policies" / "examples" / "centre-offers.cases.yaml"
AGENT = REPO / "policies" / "examples" / "centre-offers.agent.yaml"

HEADER = f"apiVersion: fedgate.io/v1\nkind: AgentPolicyCases\nagent: {AGENT}\ncases:\n"
NIGHT = '"2026-01-07T23:30:00+08:00"'


def write_cases(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "site.cases.yaml"
    path.write_text(HEADER + body)
    return path


def test_the_shipped_table_passes_and_covers_offers_and_each_kind_of_refusal() -> None:
    run = run_cases_file(EXAMPLE)
    assert run.error == ""
    assert [r.problems for r in run.results if not r.passed] == []
    _, cases = load_cases(EXAMPLE)
    assert len(cases) >= 6
    assert sum(1 for c in cases if c.expect_offers) >= 3
    assert any(c.expect == "accept" for c in cases)
    reasons = " ".join(c.reason for c in cases if c.expect == "refuse")
    for words in ("tenant", "at most", "registry", "offered at"):
        assert words in reasons


def test_a_case_that_does_not_hold_fails_with_what_was_expected_and_what_happened(tmp_path: Path) -> None:
    path = write_cases(
        tmp_path,
        f"  - name: wrong offer\n    time: {NIGHT}\n    expect_offers: {{ascend-910b: 4}}\n"
        f"  - name: wrong accept\n    time: {NIGHT}\n"
        "    launch: {tenant: acme, project: x, class: ascend-910b, cards: 1}\n    expect: accept\n"
        f"  - name: wrong refuse\n    time: {NIGHT}\n"
        "    launch: {tenant: panda-lm, project: eval, class: nvidia-h20, cards: 1, image: registry.example/x:1}\n"
        "    expect: refuse\n"
        f"  - name: wrong reason\n    time: {NIGHT}\n"
        "    launch: {tenant: acme, project: x, class: ascend-910b, cards: 1}\n    expect: refuse\n"
        "    reason: too big\n",
    )
    results = run_cases_file(path).results
    assert [(r.name, r.line, r.passed) for r in results] == [
        ("wrong offer", 5, False),
        ("wrong accept", 8, False),
        ("wrong refuse", 12, False),
        ("wrong reason", 16, False),
    ]
    assert results[0].problems == ("ascend-910b: expected an offer of 4 cards, got 12 (window otherwise, share 0.8)",)
    assert results[1].problems == ("expected accept, but it is refused: site policy: tenant acme is not accepted here",)
    assert results[2].problems == ("expected refuse, but the launch is accepted",)
    assert "does not contain 'too big'" in results[3].problems[0]


def test_launches_are_judged_like_the_runtime_pool_first_and_devices_last(tmp_path: Path) -> None:
    unscheduled = AGENT.read_text().split("    nvidia-h20:\n")[0]  # the H20s get no offer windows
    (tmp_path / "site.agent.yaml").write_text(unscheduled)
    path = tmp_path / "site.cases.yaml"
    path.write_text(
        HEADER.replace(str(AGENT), "site.agent.yaml") + f"  - name: no such pool\n    time: {NIGHT}\n"
        "    launch: {tenant: panda-lm, project: eval, class: nvidia-h100, cards: 1}\n    expect: refuse\n"
        "    reason: site centre-a has no pool of nvidia-h100; it offers ascend-910b, nvidia-h20\n"
        f"  - name: full without a schedule\n    time: {NIGHT}\n"
        "    launch: {tenant: panda-lm, project: eval, class: nvidia-h20, cards: 4, image: registry.example/x:1}\n"
        "    in_use: {nvidia-h20: 6}\n    expect: refuse\n"
        "    reason: needs 4 cards of nvidia-h20 but only 2 of the 8 offered are free\n",
    )
    assert [r.problems for r in run_cases_file(path).results] == [(), ()]


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        (f"  - name: a\n    time: {NIGHT}\n    expect_offer: {{ascend-910b: 4}}\n", 5, "needs either expect_offers"),
        (
            f"  - name: a\n    time: {NIGHT}\n    expect_offers: {{ascend-910b: 4}}\n"
            "    launch: {tenant: a, project: b, class: ascend-910b, cards: 1}\n    expect: accept\n",
            5,
            "needs either expect_offers or a launch",
        ),
        ("  - name: a\n    time: '2026-01-07T23:30:00'\n    expect_offers: {ascend-910b: 4}\n", 6, "has no offset"),
        ("  - name: a\n    time: tonight\n    expect_offers: {ascend-910b: 4}\n", 6, "is not ISO-8601"),
        (f"  - name: a\n    time: {NIGHT}\n    expect_offers: {{tpu: 4}}\n", 7, "has no pool 'tpu'"),
        (f"  - name: a\n    time: {NIGHT}\n    expect_offers: {{}}\n", 7, "expect_offers is empty"),
        (
            f"  - name: a\n    time: {NIGHT}\n    launch: {{tenant: a, project: b, class: x, cards: 1}}\n"
            "    expect: maybe\n",
            8,
            "expect must be accept or refuse",
        ),
        (
            f"  - name: a\n    time: {NIGHT}\n    launch: {{tenant: a, project: b, class: x, cards: 1}}\n"
            "    expect: accept\n    reason: x\n",
            9,
            "reason goes with expect: refuse only",
        ),
        (
            f"  - name: a\n    time: {NIGHT}\n    launch: {{tenant: a, project: b, class: x, gpus: 1}}\n"
            "    expect: accept\n",
            7,
            "missing key 'cases[0].launch.cards'",
        ),
        (f"  - name: a\n    time: {NIGHT}\n    expect_offers: {{ascend-910b: 4}}\n    colour: red\n", 8, "colour"),
    ],
)
def test_a_bad_table_is_refused_with_file_line_and_fix(tmp_path: Path, body: str, line: int, words: str) -> None:
    path = write_cases(tmp_path, body)
    run = run_cases_file(path)
    assert run.results == ()
    assert run.error.startswith(f"{path}:{line}: "), run.error
    assert words in run.error


def test_the_agent_config_must_exist_and_be_valid(tmp_path: Path) -> None:
    path = tmp_path / "site.cases.yaml"
    path.write_text(HEADER.replace(str(AGENT), "missing.agent.yaml") + "  - name: a\n")
    assert (
        "agent config" in run_cases_file(path).error
        and "missing.agent.yaml does not exist" in run_cases_file(path).error
    )
    (tmp_path / "bad.agent.yaml").write_text(AGENT.read_text().replace("share: 0.3", "share: 3"))
    path.write_text(HEADER.replace(str(AGENT), "bad.agent.yaml") + "  - name: a\n")
    assert "bad.agent.yaml:" in run_cases_file(path).error and "between 0 and 1" in run_cases_file(path).error


def test_the_command_prints_a_line_per_case_and_a_summary(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["policy", "test", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert all(line.startswith(f"PASS {EXAMPLE}: ") for line in out[:-1])
    assert out[-1] == f"{len(out) - 1} passed, 0 failed"

    failing = write_cases(
        tmp_path, f"  - name: wrong offer\n    time: {NIGHT}\n    expect_offers: {{ascend-910b: 4}}\n"
    )
    broken = tmp_path / "broken.cases.yaml"
    broken.write_text("kind: [\n")
    assert cli.main(["policy", "test", str(failing), str(broken), "-o", "json"]) == 1
    record = json.loads(capsys.readouterr().out)
    assert (record["passed"], record["failed"]) == (0, 2)
    assert record["cases"][0]["line"] == 5 and record["cases"][1]["case"] == ""


def test_the_command_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["policy", "test"]) == 2
    assert "FILE" in capsys.readouterr().err


@pytest.mark.parametrize("relative", [False, True])
def test_python_m_fedgate_cli_runs_the_table_from_any_working_directory(tmp_path: Path, relative: bool) -> None:
    cwd = EXAMPLE.parent.parent if relative else tmp_path
    target = "examples/centre-offers.cases.yaml" if relative else str(EXAMPLE)
    done = subprocess.run(
        [sys.executable, "-m", "fedgate.cli", "agent", "policy", "test", target],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].endswith("passed, 0 failed")
