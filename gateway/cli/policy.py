"""`fedgate policy check|test|diff|explain|schema`: the federation admin's offline tools for policy files.

Nothing here talks to a gateway: each command reads files, asks the pure policy code (`gateway.policy`:
loaders, `cases`, `diff`, `verdict`) and prints table, JSON or YAML. `fedgate admin policy status|reload`
are the online counterparts.

Owns: the arguments and printing of the offline policy tools.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fedgate.common.yaml import load_yaml
from gateway.app.config import REPO_POLICIES
from gateway.cli import output
from gateway.cli.connect import EXIT_FAILED, EXIT_OK, run_command
from gateway.errors import ConfigError, GatewayError
from gateway.identity.principal import Principal
from gateway.jobs.specfile import load_job_spec
from gateway.policy import load_catalogue, load_policy
from gateway.policy.cases import DEFAULT_TIME, find_cases, load_cases, run_cases
from gateway.policy.diff import diff_documents
from gateway.policy.reference import reference_text, schema_text
from gateway.policy.verdict import default_caller, judge

EPILOG = "exit codes: 0 ok (valid, all cases pass, allowed); 1 invalid, a case failed or denied; 2 bad usage or input"
CHECKERS: Mapping[str, Callable[[Path], object]] = {
    "Federation": load_policy,
    "AcceleratorCatalogue": load_catalogue,
    "PolicyCases": load_cases,
    "Job": load_job_spec,
}
_LINE = re.compile(r"^.+?:\d+: ")
# Files of other components that may sit beside policies: named, and left to the tool that owns them.
FOREIGN: Mapping[str, str] = {
    "Agent": "a site agent's config: `fedgate agent` reads it",
    "AgentPolicyCases": "a centre's cases: `fedgate agent policy test` runs them",
    "Gateway": "the gateway's config: `fedgate gateway` reads it",
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="fedgate policy", description="Check, test, compare and explain policy files, offline.", epilog=EPILOG
    )
    sub = top.add_subparsers(dest="command", required=True)
    check = sub.add_parser(
        "check",
        help="validate files (Federation, AcceleratorCatalogue, PolicyCases, Job)",
        description="Validate each file with the loader of its kind. Prints FILE:LINE: message per invalid file;"
        " a file with several problems reports only its first (fix it and check again). Folders are searched"
        " for *.yaml files.",
    )
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")
    check.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    test = sub.add_parser("test", help="run every *.cases.yaml table under a folder")
    test.add_argument("root", nargs="?", type=Path, default=Path("policies"), metavar="DIR")
    diff = sub.add_parser("diff", help="what changes between two policies, and for whom")
    diff.add_argument("old", type=Path)
    diff.add_argument("new", type=Path)
    explain = sub.add_parser("explain", help="the decision on a job under a policy file, with every reason")
    explain.add_argument("-f", "--file", type=Path, required=True, help="job YAML")
    explain.add_argument("--policy", type=Path, default=REPO_POLICIES / "federation.yaml")
    explain.add_argument("--catalogue", type=Path, default=REPO_POLICIES / "accelerators.yaml")
    explain.add_argument("--as", dest="caller", default="", help="tenant/user or admin (default: a tenant member)")
    explain.add_argument("--time", default="", help=f"ISO-8601 UTC time (default: now; tests use {DEFAULT_TIME})")
    for command in (check, test, diff, explain):
        output.add_output_flag(command)
    schema = sub.add_parser("schema", help="the JSON Schema of kind: Federation (for editors)")
    schema.add_argument("-o", "--output", type=Path, default=None, metavar="FILE", help="write it here")
    schema.add_argument("--markdown", action="store_true", help="the key reference as Markdown tables instead")
    return top


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    commands: Mapping[str, Callable[[argparse.Namespace], int]] = {
        "check": _check,
        "test": _test,
        "diff": _diff,
        "explain": _explain,
        "schema": _schema,
    }
    return run_command(f"fedgate policy {args.command}", lambda: commands[args.command](args))


# ---- check ----------------------------------------------------------------------------------------------


def check_file(path: Path) -> tuple[str, str]:
    """(kind, problem) of one file; problem is "" when it is valid, else `FILE:LINE: message`."""
    kind = ""
    try:
        doc = load_yaml(path, error=ConfigError)
        kind = str(doc.data.get("kind", "")) if isinstance(doc.data, dict) else ""
        checker = CHECKERS.get(kind)
        if checker is None and kind not in FOREIGN:
            found = f"kind {kind!r}" if kind else "no kind"
            raise doc.error(("kind",), f"{found}: not a file fedgate policy check knows", f"use {', '.join(CHECKERS)}")
        if checker is not None:
            checker(path)
    except ConfigError as exc:
        # File-level problems (size, encoding, unreadable) carry no line: report them at line 1.
        message = exc.message if _LINE.match(exc.message) else exc.message.replace(f"{path}: ", f"{path}:1: ", 1)
        return kind, message
    return kind, ""


def _check(args: argparse.Namespace) -> int:
    files = [f for root in args.files for f in (sorted(root.rglob("*.yaml")) if root.is_dir() else [root])]
    rows: list[dict[str, Any]] = []
    for path in files:
        kind, problem = check_file(path)
        rows.append({"file": str(path), "kind": kind, "valid": not problem, "problem": problem})
    if args.output != "table":
        print(output.render(rows, [], args.output))
    for row in rows if args.output == "table" else ():
        if row["problem"]:
            print(row["problem"])
        elif not args.quiet:
            skipped = FOREIGN.get(row["kind"])
            print(f"{row['file']}: " + (f"skipped ({skipped})" if skipped else f"ok ({row['kind']})"))
    return EXIT_OK if all(r["valid"] for r in rows) else EXIT_FAILED


# ---- test -----------------------------------------------------------------------------------------------


def _test(args: argparse.Namespace) -> int:
    if not args.root.exists():
        raise GatewayError(f"{args.root} does not exist: name a folder of *.cases.yaml files")
    paths = find_cases(args.root)
    kinds = {p: check_file(p)[0] for p in paths}
    skipped = [p for p in paths if kinds[p] in FOREIGN and kinds[p] != "AgentPolicyCases"]
    runs = [run_cases(path) for path in paths if kinds[path] not in FOREIGN]
    rows: list[dict[str, Any]] = []
    for path in (p for p in paths if kinds[p] == "AgentPolicyCases"):
        rows += _agent_cases(path)
    for run in runs:
        if run.error:
            rows.append({"file": run.source, "line": 0, "case": "", "passed": False, "problems": [run.error]})
        rows += [
            {"file": r.source, "line": r.line, "case": r.name, "passed": r.passed, "problems": list(r.problems)}
            for r in run.results
        ]
    passed = sum(1 for r in rows if r["passed"])
    failed = len(rows) - passed
    if args.output != "table":
        print(output.render_record({"passed": passed, "failed": failed, "cases": rows}, args.output))
    else:
        for path in skipped:
            print(f"SKIP {path} ({FOREIGN[check_file(path)[0]]})")
        for row in rows:
            if not row["case"]:
                print(f"FAIL {row['problems'][0]}")
            elif row["passed"]:
                print(f"PASS {row['file']}: {row['case']}")
            else:
                print(f"FAIL {row['file']}:{row['line']}: {row['case']}: {'; '.join(row['problems'])}")
        print(f"{passed} passed, {failed} failed" + ("" if runs else f" (no *.cases.yaml under {args.root})"))
    return EXIT_OK if runs and not failed else EXIT_FAILED


def _agent_cases(path: Path) -> list[dict[str, Any]]:
    """A centre's cases belong to the agent package, which the gateway never imports: run them through the
    `fedgate agent policy test` command and take its rows."""
    command = [sys.executable, "-m", "fedgate.cli", "agent", "policy", "test", str(path), "-o", "json"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        rows: list[dict[str, Any]] = json.loads(done.stdout)["cases"]
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError) as exc:
        problem = (
            f"`fedgate agent policy test` gave no result ({type(exc).__name__}): {done.stderr.strip()[-300:]}"
            if "done" in locals()
            else str(exc)
        )
        return [{"file": str(path), "line": 0, "case": "", "passed": False, "problems": [f"{path}: {problem}"]}]
    return rows


# ---- diff -----------------------------------------------------------------------------------------------

DIFF_COLUMNS = [
    ("section", "SECTION"),
    ("subject", "SUBJECT"),
    ("change", "CHANGE"),
    ("field", "FIELD"),
    ("old", "OLD"),
    ("new", "NEW"),
    ("affects", "AFFECTS"),
]


def _diff(args: argparse.Namespace) -> int:
    old, new = load_policy(args.old), load_policy(args.new)
    assert old.document is not None and new.document is not None  # parse_policy always keeps it
    rows = [dataclasses.asdict(change) for change in diff_documents(old.document, new.document)]
    if args.output == "table" and not rows:
        print(f"no differences ({args.old} and {args.new} mean the same policy)")
    else:
        print(output.render(rows, DIFF_COLUMNS, args.output))
    return EXIT_OK


# ---- explain --------------------------------------------------------------------------------------------

SITE_COLUMNS = [
    ("site", "SITE"),
    ("region", "REGION"),
    ("class", "CLASS"),
    ("verdict", "VERDICT"),
    ("code", "CODE"),
    ("message", "MESSAGE"),
]


def _caller(text: str, policy_federation: str, tenant: str) -> Principal | None:
    if not text:
        return None
    name = text.partition("/")[2]
    if text == "admin" or text.startswith("admin/"):
        return Principal.admin(policy_federation, name or "policy-admin")
    if not name or text.count("/") != 1:
        raise GatewayError(f"--as {text!r}: write tenant/user, admin or admin/name")
    return Principal.user(policy_federation, text.partition("/")[0] or tenant, name)


def _time(text: str) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise GatewayError(f"--time {text!r} is not an ISO-8601 time such as 2026-01-10T23:30:00Z") from None
    if value.tzinfo is None:
        raise GatewayError(f"--time {text!r} has no time zone: add Z for UTC")
    return value.astimezone(UTC)


def _explain(args: argparse.Namespace) -> int:
    policy, catalogue = load_policy(args.policy), load_catalogue(args.catalogue)
    tenant = args.caller.split("/")[0] if "/" in args.caller and not args.caller.startswith("admin") else ""
    spec = load_job_spec(args.file, default_tenant=tenant)
    caller = _caller(args.caller, policy.federation, spec.tenant) or default_caller(policy, spec)
    now = _time(args.time)
    verdict = judge(policy, catalogue, spec, caller, now)
    sites = [
        {
            "site": s.site,
            "region": s.region,
            "class": s.accelerator_class,
            "verdict": "allow" if s.reason is None else "deny",
            "code": s.reason.code if s.reason else "",
            "message": s.reason.message if s.reason else "",
        }
        for s in verdict.sites
    ]
    record: dict[str, Any] = {
        "decision": "allow" if verdict.allowed else "deny",
        "policy": f"{args.policy} (version {verdict.policy_version[:12]})",
        "caller": caller.uri,
        "time": now,
        "classes": list(verdict.classes),
        "priority": f"{verdict.priority} ({verdict.priority_class})" if verdict.priority_class else verdict.priority,
        "rules_matched": list(verdict.matched),
    }
    if args.output != "table":
        reasons = [output.reason_row(r) for r in verdict.reasons]
        print(output.render_record({**record, "reasons": reasons, "sites": sites}, args.output))
    else:
        print(output.render_record(record, "table"))
        print("\n" + output.render([output.reason_row(r) for r in verdict.reasons], output.REASON_COLUMNS, "table"))
        if sites:
            print("\n" + output.render(sites, SITE_COLUMNS, "table"))
        else:
            print("\nthe policy lists no sites: residency, region rules and quotas are checked per site at placement")
    return EXIT_OK if verdict.allowed else EXIT_FAILED


# ---- schema ---------------------------------------------------------------------------------------------


def _schema(args: argparse.Namespace) -> int:
    text = reference_text() if args.markdown else schema_text()
    if args.output is None:
        print(text, end="")
    else:
        args.output.write_text(text)
    return EXIT_OK
