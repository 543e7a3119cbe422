"""`fedgate agent policy test FILE...`: run a centre's tables of expected decisions and print the outcome.

Owns: the `policy` command group's arguments and its output (a PASS or FAIL line per case and a final
`N passed, N failed` line, or the same as json/yaml), and its exit codes: 0 when every case of every file
passed, 1 otherwise (a file that cannot be read counts as one failure). It decides nothing itself: the
cases run in `agents.policy.cases`. The gateway's `fedgate policy test DIR` hands files of kind
AgentPolicyCases to this command (`python -m fedgate.cli agent policy test FILE`), so its output format and
exit codes are a contract.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from agents.policy.cases import CasesRun, run_cases_file

EXIT_OK = 0
EXIT_FAILED = 1


def add_policy_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = commands.add_parser(
        "policy",
        help="check the centre's own policy (the agent config's policy: section) offline",
        description="Check the centre's own policy offline.",
    )
    sub = policy.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")
    test = sub.add_parser(
        "test",
        help="run tables of expected offers and launch decisions (kind: AgentPolicyCases)",
        description=(
            "Run each case of each FILE (kind: AgentPolicyCases) against the agent config it names: the offers "
            "at an instant, or whether a launch is accepted. Prints PASS or FAIL per case and a summary. "
            "Exit codes: 0 all passed, 1 a case failed or a file could not be read."
        ),
    )
    test.add_argument("files", nargs="+", type=Path, metavar="FILE", help="cases files (*.cases.yaml)")
    test.add_argument("-o", "--output", default="table", choices=("table", "json", "yaml"), help="default: table")


def run_policy_command(args: argparse.Namespace) -> int:
    runs = [run_cases_file(path) for path in args.files]
    rows = _rows(runs)
    passed = sum(1 for row in rows if row["passed"])
    failed = len(rows) - passed
    if args.output == "table":
        for row in rows:
            print(_line(row))
        print(f"{passed} passed, {failed} failed")
    else:
        record = {"passed": passed, "failed": failed, "cases": rows}
        text = json.dumps(record, indent=2) + "\n" if args.output == "json" else yaml.safe_dump(record, sort_keys=False)
        print(text, end="")
    return EXIT_OK if rows and not failed else EXIT_FAILED


def _rows(runs: list[CasesRun]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for run in runs:
        if run.error:
            rows.append({"file": run.source, "line": 0, "case": "", "passed": False, "problems": [run.error]})
        rows += [
            {"file": r.source, "line": r.line, "case": r.name, "passed": r.passed, "problems": list(r.problems)}
            for r in run.results
        ]
    return rows


def _line(row: dict[str, Any]) -> str:
    if not row["case"]:
        return f"FAIL {row['problems'][0]}"  # the file itself: the message names file and line
    if row["passed"]:
        return f"PASS {row['file']}: {row['case']}"
    return f"FAIL {row['file']}:{row['line']}: {row['case']}: {'; '.join(row['problems'])}"
