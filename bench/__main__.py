"""`python -m bench` (`make bench`): run the benchmarks, print the table, write bench/results/latest.json.

Owns: the command line and the exit code: 0 when every run was correct (whatever the figures), 1 when a
run lost or failed a call, 2 on bad arguments. A missed budget is reported in the table, not in the exit
code: benchmarks inform, tests gate.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.admission import TARGET_RPS, TARGET_VS_ECHO, Mode, Plan, run_benchmark
from bench.cycle import render as render_cycle
from bench.cycle import run_cycle_benchmark
from bench.load import LoadFailed
from bench.machine import CpuAudit, machine_facts
from bench.process import ServerFailed
from bench.report import carry_over, render_notes, render_table, row_to_json, write_json
from bench.simulation import render as render_simulation
from bench.simulation import run_simulation_benchmark
from bench.takeover import render as render_takeover
from bench.takeover import run_takeover_benchmark

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
QUICK_JOBS, QUICK_WARMUP, QUICK_MAX_SECONDS = 300, 50, 5.0
BENCHMARKS = ("admission", "cycle", "simulation", "takeover")
NOISY_SHARE = 0.05  # other processes took more than this share of the machine's CPU: say so


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Durable admission (CreateJob over mTLS to a gateway process) next to a bare grpc.aio "
        "echo over the same mTLS, at a fixed concurrency and sequentially.",
    )
    parser.add_argument("--jobs", type=int, default=3000, help="measured calls per run (default 3000)")
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight (default 64)")
    parser.add_argument("--warmup", type=int, default=200, help="calls before the clock starts (default 200)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=10.0,
        help="stop starting calls after this long in a run, 0 for no cap (default 10)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a small run: {QUICK_JOBS} jobs, {QUICK_WARMUP} warm-up, capped at {QUICK_MAX_SECONDS:.0f} s",
    )
    parser.add_argument(
        "--skip",
        action="append",
        choices=BENCHMARKS,
        default=[],
        help="leave a benchmark out (repeatable); the default runs all of " + ", ".join(BENCHMARKS),
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.warmup, args.max_seconds = QUICK_JOBS, QUICK_WARMUP, QUICK_MAX_SECONDS
    if args.jobs < 1 or args.warmup < 1 or args.concurrency < 1 or args.max_seconds < 0:
        parser.error("--jobs, --warmup and --concurrency must be at least 1, --max-seconds at least 0")
    plan = Plan(args.jobs, args.warmup, args.max_seconds or None)
    modes = [Mode(f"c={args.concurrency}", args.concurrency)]
    if args.concurrency != 1:  # and always the sequential view, for single-call latency
        modes.append(Mode("c=1", 1))

    def progress(message: str) -> None:
        print(f"bench: {message}", file=sys.stderr, flush=True)

    facts = machine_facts()
    rows = []
    extra: dict[str, object] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="fedgate-bench-") as tmp, CpuAudit() as audit:
            if "admission" not in args.skip:
                rows = run_benchmark(Path(tmp), plan, modes, progress)
            if "simulation" not in args.skip:
                progress("simulator on the alibaba-openb trace, 8 centres, three modes")
                simulated = run_simulation_benchmark(Path(tmp))
                extra["simulation"] = simulated.to_json()
            if "cycle" not in args.skip:
                progress("one scheduling cycle, 10,000 queued jobs over 1,000 sites (minutes while it is slow)")
                cycle = run_cycle_benchmark()
                extra["cycle"] = cycle.to_json()
            if "takeover" not in args.skip:
                progress("leader takeover: two gateway processes on a throw-away PostgreSQL, kill -9 and SIGTERM")
                takeover = run_takeover_benchmark(Path(tmp) / "takeover")
                extra["takeover"] = takeover.to_json()
    except (ServerFailed, LoadFailed) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    if rows:
        print(render_table(rows))
        for note in render_notes(rows, plan.max_seconds):
            print(note)
    if "simulation" in extra:
        print(render_simulation(simulated))
    if "cycle" in extra:
        print(render_cycle(cycle))
    if "takeover" in extra:
        print(render_takeover(takeover))
    if (audit.foreign_share or 0.0) > NOISY_SHARE or (audit.stolen_share or 0.0) > NOISY_SHARE:
        print(
            f"! other processes used {audit.foreign_share:.0%} of this machine's CPU and the hypervisor "
            f"stole {audit.stolen_share:.0%} during the {audit.wall_seconds:.0f} s run: these figures are noisy"
        )
    document: dict[str, object] = {
        "benchmark": "admission",
        "machine": facts,
        "cpu_audit": audit.to_json(),
        "plan": {
            "jobs": plan.jobs,
            "warmup": plan.warmup,
            "concurrency": args.concurrency,
            "max_seconds": plan.max_seconds,
        },
        "targets": {"admission_rps": TARGET_RPS, "admission_vs_echo": TARGET_VS_ECHO},
        "runs": [row_to_json(row) for row in rows],
        **extra,
    }
    write_json(args.output, carry_over(args.output, document, args.skip))
    print(f"results: {args.output}")
    return 0 if all(row.correct for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
