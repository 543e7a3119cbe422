"""`python -m bench.pair --before DIR`: the scheduling cycle and durable admission of two source trees, alternately.

Owns: a fair before/after on a machine others share. A cycle run is a fresh process that builds the cycle
benchmark's federation (`bench.cycle.build`, not timed) from one tree (`PYTHONPATH=<tree>`) and times one
`schedule()`, wall and CPU. An admission run starts that tree's gateway as its own process on a fresh store
and loads it with this tree's client (`bench.admission.run_admission`, 64 calls in flight over mTLS); every
acknowledged job must be in the store. The trees take turns, so load that comes and goes hits both alike. DIR
is a plain export of the earlier code, e.g. `git archive 35fb0a1 | tar -x -C /tmp/before`. Writes JSON (every
run, and min and median per tree) to stdout or `--output`. It measures; it never fails on a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
ONE_CYCLE = (
    "import json, time\n"
    "from bench.cycle import build\n"
    "scheduler, _, _ = build()\n"
    "wall, cpu = time.perf_counter(), time.process_time()\n"
    "dispatched = scheduler.schedule()\n"
    "print(json.dumps({'wall': time.perf_counter() - wall, 'cpu': time.process_time() - cpu,"
    " 'dispatched': dispatched}))\n"
)
ONE_INCREMENTAL = (  # the incremental cycle (bench.cycle.run_incremental): medians of its rounds, one process
    "import json, statistics\n"
    "from bench.cycle import run_incremental\n"
    "wall, cpu, dispatched = run_incremental()\n"
    "print(json.dumps({'wall': statistics.median(wall), 'cpu': statistics.median(cpu), 'dispatched': dispatched}))\n"
)


def one_cycle(tree: Path, script: str = ONE_CYCLE) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", script], cwd=tree, env=env, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def one_admission(tree: Path, workdir: Path, jobs: int) -> dict[str, Any]:
    from bench.admission import Mode, Pki, Plan, make_pki, run_admission

    root = workdir / "pki"
    pki = Pki(root / "gateway", root / "alice") if (root / "gateway").is_dir() else make_pki(root)
    run = run_admission(
        pki,
        workdir / f"run-{len(list(workdir.glob('run-*')))}",
        Mode("c64", 64),
        Plan(jobs=jobs, warmup=200, max_seconds=None),
        tree=tree,
    )
    if not run.store.ok or run.result.errors:
        raise RuntimeError(f"{tree}: {run.result.errors} errors, {run.store.found} of {run.store.expected} jobs stored")
    return {"rps": run.result.rps, "p50_ms": run.result.p50_ms, "p99_ms": run.result.p99_ms}


def admission_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rps = [r["rps"] for r in runs]
    return {"runs": runs, "rps_max": max(rps), "rps_median": statistics.median(rps)}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls, cpus = [r["wall"] for r in runs], [r["cpu"] for r in runs]
    return {
        "runs": runs,
        "wall_min": min(walls),
        "wall_median": statistics.median(walls),
        "cpu_min": min(cpus),
        "cpu_median": statistics.median(cpus),
        "dispatched": sorted({r["dispatched"] for r in runs}),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pair", description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="a plain export of the earlier source tree")
    parser.add_argument("--after", type=Path, default=HERE, help=f"the later tree (default {HERE})")
    parser.add_argument("--rounds", type=int, default=5, help="cycles per tree (default 5)")
    parser.add_argument("--output", type=Path, help="write the JSON here instead of stdout")
    parser.add_argument(
        "--what",
        choices=("cycle", "incremental", "admission", "both"),
        default="both",
        help="what to compare (default both: cycle and admission; incremental: bench.cycle.run_incremental's"
        " median round, which the tree's bench/cycle.py must have)",
    )
    parser.add_argument("--jobs", type=int, default=2000, help="measured CreateJob calls per admission run")
    args = parser.parse_args(argv)
    if args.rounds < 1 or not (args.before / "bench" / "cycle.py").is_file():
        parser.error("--rounds must be at least 1 and --before must hold bench/cycle.py (a fedgate source tree)")
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    admissions: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="fedgate-pair-") as scratch:
        for _ in range(args.rounds):
            for side, tree in (("before", args.before.resolve()), ("after", args.after.resolve())):
                if args.what in {"cycle", "both"}:
                    runs[side].append(one_cycle(tree))
                if args.what == "incremental":
                    runs[side].append(one_cycle(tree, ONE_INCREMENTAL))
                if args.what in {"admission", "both"}:
                    admissions[side].append(one_admission(tree, Path(scratch), args.jobs))
            load.append(os.getloadavg()[0])
    document: dict[str, Any] = {
        "command": "python -m bench.pair " + " ".join(argv if argv is not None else sys.argv[1:]),
        "load_average_1m": load,
    }
    for side, tree in (("before", args.before), ("after", args.after)):
        document[side] = {"tree": str(tree)}
        if runs[side]:
            document[side]["incremental" if args.what == "incremental" else "cycle"] = summary(runs[side])
        if admissions[side]:
            document[side]["admission"] = admission_summary(admissions[side])
    text = json.dumps(document, indent=2) + "\n"
    if args.output:
        args.output.write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
