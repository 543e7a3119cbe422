"""`python -m bench [NAME ...]` (`make bench`, `make bench BENCH="ingest gangs"`): run the benchmarks, print
each one's table and the summary, write bench/results/latest.json.

Owns: the command line, choosing the benchmarks (`bench.registry` names them), running each in a temp dir
of its own, the results document (detail per benchmark, the 13-key `summary`, what was carried over from the
previous file and from when, what is missing) and the exit code: 0 when every run was correct (whatever the
figures), 1 when a run lost or failed a call or a benchmark failed, 2 on bad arguments. A missed budget is
reported in the tables, not in the exit code: benchmarks inform, tests gate.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.admission import DEFAULT_CONCURRENCY, DEFAULT_PLAN, Plan
from bench.machine import CpuAudit, machine_facts
from bench.registry import BENCHMARKS, BenchmarkAbsent, Result
from bench.report import carry_over, full_summary, missing_keys, write_json

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
QUICK_JOBS, QUICK_WARMUP, QUICK_MAX_SECONDS = 300, 50, 5.0
NOISY_SHARE = 0.05  # other processes took more than this share of the machine's CPU: say so


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="fedgate's benchmarks, each next to its baseline in the same run. Benchmarks: "
        + "; ".join(f"{b.name}: {b.about}" for b in BENCHMARKS.values()),
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="run this one (repeatable)")
    parser.add_argument("--skip", action="append", default=[], metavar="NAME", help="leave one out (repeatable)")
    plan = DEFAULT_PLAN
    parser.add_argument("--jobs", type=int, default=plan.jobs, help=f"measured calls per run (default {plan.jobs})")
    parser.add_argument(
        "--concurrency", type=int, default=DEFAULT_CONCURRENCY, help=f"calls in flight (default {DEFAULT_CONCURRENCY})"
    )
    parser.add_argument(
        "--warmup", type=int, default=plan.warmup, help=f"calls before the clock starts (default {plan.warmup})"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=plan.max_seconds,
        help=f"stop starting calls after this long in a run, 0 for no cap (default {plan.max_seconds:g})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a small run: {QUICK_JOBS} jobs, {QUICK_WARMUP} warm-up, capped at {QUICK_MAX_SECONDS:.0f} s",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    return parser


def select(names: Sequence[str], only: Sequence[str], skip: Sequence[str]) -> list[str]:
    """The benchmarks to run, in registry order: those named (positionally or with --only), else all, less
    --skip. Raises ValueError naming an unknown benchmark and the valid names."""
    unknown = [n for n in (*names, *only, *skip) if n not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark {', '.join(unknown)}; the benchmarks are: {', '.join(BENCHMARKS)}")
    chosen = set(names) | set(only) or set(BENCHMARKS)
    return [n for n in BENCHMARKS if n in chosen and n not in skip]


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run_selected(
    names: list[str], workdir: Path, plan: Plan, concurrency: int
) -> tuple[dict[str, Result], dict[str, str], dict[str, str]]:
    """Run each benchmark in a folder of its own: (results, absent: name -> why, failed: name -> error)."""
    results: dict[str, Result] = {}
    absent: dict[str, str] = {}
    failed: dict[str, str] = {}
    for name in names:
        benchmark = BENCHMARKS[name]
        try:
            run = benchmark.load()
        except BenchmarkAbsent as exc:
            absent[name] = str(exc)
            progress(f"{name}: not run: {exc}")
            continue
        folder = workdir / name
        folder.mkdir()
        options: dict[str, Any] = {"plan": plan, "concurrency": concurrency} if benchmark.takes_plan else {}
        progress(f"{name}: {benchmark.about}")
        try:
            results[name] = run(folder, progress, **options)
        except Exception as exc:  # one benchmark's failure (a bug included) must not discard the others' figures
            failed[name] = f"{type(exc).__name__}: {exc}"
            progress(f"{name}: FAILED:\n{traceback.format_exc()}")
    return results, absent, failed


def render_summary(document: dict[str, Any], ran: list[str]) -> list[str]:
    """The summary, one key a line, with where each figure comes from; then what is missing and why."""
    carried = document.get("carried_over", {})
    owner = {key: b.name for b in BENCHMARKS.values() for key in b.owns}
    lines = ["summary:"]
    width = max(len(k) for k in document["summary"])
    for key, value in document["summary"].items():
        name = owner[key]
        if value is None:
            source = "MISSING"
            if name in document.get("absent", {}):
                source += f": {document['absent'][name]}"
            elif name in document.get("failed", {}):
                source += f": {name} failed"
            elif name in ran:
                source += f": {name} ran but gave no figure"
            elif name in carried:
                source += f": {name} not run now; its results of {carried[name]} have no figure for it"
            else:
                source += f": {name} never ran"
        else:
            source = "this run" if name in ran else f"carried over from {carried.get(name, 'an earlier run')}"
        shown = "" if value is None else f"{value:,.3f}".rstrip("0").rstrip(".")
        lines.append(f"  {key:<{width}}  {shown:>12}  {source}")
    missing = document["summary_missing"]
    if missing:
        lines.append(f"! {len(missing)} of {len(document['summary'])} summary figures missing: {', '.join(missing)}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.warmup, args.max_seconds = QUICK_JOBS, QUICK_WARMUP, QUICK_MAX_SECONDS
    if args.jobs < 1 or args.warmup < 1 or args.concurrency < 1 or args.max_seconds < 0:
        parser.error("--jobs, --warmup and --concurrency must be at least 1, --max-seconds at least 0")
    try:
        names = select(args.names, args.only, args.skip)
    except ValueError as exc:
        parser.error(str(exc))
    plan = Plan(args.jobs, args.warmup, args.max_seconds or None)

    facts = machine_facts()
    with tempfile.TemporaryDirectory(prefix="fedgate-bench-") as tmp, CpuAudit() as audit:
        results, absent, failed = run_selected(names, Path(tmp), plan, args.concurrency)
    for result in results.values():
        print(result.render())
        print()
    if (audit.foreign_share or 0.0) > NOISY_SHARE or (audit.stolen_share or 0.0) > NOISY_SHARE:
        print(
            f"! other processes used {audit.foreign_share:.0%} of this machine's CPU and the hypervisor "
            f"stole {audit.stolen_share:.0%} during the {audit.wall_seconds:.0f} s run: these figures are noisy"
        )
    measured: dict[str, float | None] = {}
    for name, result in results.items():
        figures = result.summary()
        foreign = sorted(set(figures) - set(BENCHMARKS[name].owns))
        if foreign:
            print(f"! {name} reported keys it does not own, ignored: {', '.join(foreign)}")
        measured.update({k: v for k, v in figures.items() if k in BENCHMARKS[name].owns})
    document: dict[str, Any] = {
        "machine": facts,
        "cpu_audit": audit.to_json(),
        "plan": {
            "jobs": plan.jobs,
            "warmup": plan.warmup,
            "concurrency": args.concurrency,
            "max_seconds": plan.max_seconds,
        },
        "ran": list(results),
        "absent": absent,
        "failed": failed,
        **{name: result.to_json() for name, result in results.items()},
        "summary": full_summary(measured),
    }
    # What did not run here (not chosen, skipped, not in this tree) keeps its last figures; a failed one does not.
    not_run = [n for n in BENCHMARKS if n not in results and n not in failed]
    document = carry_over(args.output, document, not_run)
    document["summary"] = full_summary(document["summary"])
    document["summary_missing"] = missing_keys(document["summary"])
    for line in render_summary(document, list(results)):
        print(line)
    write_json(args.output, document)
    print(f"results: {args.output}")
    correct = all(getattr(result, "correct", True) for result in results.values())
    return 0 if correct and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
