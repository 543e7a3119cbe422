"""The simulator on the Alibaba openb trace: siloed, federated and pooled side by side, against the targets.

Owns: converting `openb_pod_list_default.csv` into 8 centres (seed 1) in a temporary folder, under a stated
load (`NODE_SHARE` of the trace's nodes, submit times divided by `TIME_COMPRESSION`: the trace as it is
never loads its own cluster, peak 70 of 6,212 cards), replaying it through `fedgate simulate`'s own code path
in the three modes, and the verdicts. It also reports the converted trace's peak concurrent demand in cards
(if nothing waited) and each mode's utilisation over the arrival window, which show how loaded the run was.
Targets (issue 5): federated mean queueing delay at most 1.25 x pooled, and far below siloed (here: at most
half).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.cli.simulate import run
from gateway.simulate import MODES, alibaba, load_trace, write_sites, write_trace


def _traces() -> Path:
    """The trace folder: $FEDGATE_TRACES, else the nearest `shared/traces` above the repository (a checkout or
    a worktree of it)."""
    if os.environ.get("FEDGATE_TRACES"):
        return Path(os.environ["FEDGATE_TRACES"]) / "alibaba-openb"
    here = Path(__file__).resolve()
    found = next((p / "shared" / "traces" for p in here.parents[1:] if (p / "shared" / "traces").is_dir()), None)
    return (found or here.parents[2] / "shared" / "traces") / "alibaba-openb"


TRACES = _traces()
PODS, NODES = TRACES / "openb_pod_list_default.csv", TRACES / "openb_node_list_gpu_node.csv"
CENTRES, SEED = 8, 1
# The load: a tenth of the nodes (random, seed 1), arrivals 100 x as dense; chosen so that pooled is about
# 80 % busy over the arrival window (see bench/README.md for the other settings tried).
NODE_SHARE, TIME_COMPRESSION, HOMES_BY = 0.1, 100.0, "even"
VS_POOLED, VS_SILOED = 1.25, 0.5


@dataclass(frozen=True)
class SimulationBench:
    modes: dict[str, dict[str, Any]]
    seconds: float
    total_cards: int
    peak_cards: int
    skipped: dict[str, int]
    fractional: int

    def ratios(self) -> tuple[float | None, float | None]:
        """Federated mean wait / pooled's, and / siloed's (None when the divisor is 0)."""
        fed, pooled, siloed = (self.modes[m]["mean_wait_s"] for m in ("federated", "pooled", "siloed"))
        return (fed / pooled if pooled else None), (fed / siloed if siloed else None)

    def verdicts(self) -> tuple[str, str]:
        fed, pooled, siloed = (self.modes[m]["mean_wait_s"] for m in ("federated", "pooled", "siloed"))
        if siloed == 0:
            vacuous = "nothing waits in any mode"
            return f"met, vacuously ({vacuous})", f"NOT SHOWN ({vacuous}, siloed included)"
        first = "met" if fed <= VS_POOLED * pooled else "MISSED"
        second = "met" if fed <= VS_SILOED * siloed else "MISSED"
        return first, second

    def to_json(self) -> dict[str, Any]:
        first, second = self.verdicts()
        return {
            "trace": str(PODS),
            "centres": CENTRES,
            "seed": SEED,
            "node_share": NODE_SHARE,
            "time_compression": TIME_COMPRESSION,
            "homes_by": HOMES_BY,
            "seconds": self.seconds,
            "total_cards": self.total_cards,
            "peak_concurrent_cards": self.peak_cards,
            "skipped_pods": self.skipped,
            "fractional_pods_as_one_card": self.fractional,
            "modes": self.modes,
            "targets": {
                "federated_mean_wait_vs_pooled_at_most": VS_POOLED,
                "federated_mean_wait_vs_siloed_at_most": VS_SILOED,
                "federated_vs_pooled": self.ratios()[0],
                "federated_vs_siloed": self.ratios()[1],
                "vs_pooled": first,
                "vs_siloed": second,
            },
        }


def peak_cards(trace: Path) -> int:
    """The most cards the trace's jobs hold at once if each starts when submitted (no queueing)."""
    changes: list[tuple[float, int]] = []
    for job in load_trace(trace):
        changes += [(job.submit_s, job.cards), (job.submit_s + job.duration_s, -job.cards)]
    changes.sort(key=lambda c: (c[0], c[1]))
    held = peak = 0
    for _, delta in changes:
        held += delta
        peak = max(peak, held)
    return peak


def run_simulation_benchmark(workdir: Path) -> SimulationBench:
    conversion = alibaba.convert(
        alibaba.read_pods(PODS),
        alibaba.read_nodes(NODES),
        CENTRES,
        SEED,
        node_share=NODE_SHARE,
        time_compression=TIME_COMPRESSION,
        homes_by=HOMES_BY,
    )
    trace, sites = workdir / "openb-trace.csv", workdir / "openb-sites.yaml"
    write_trace(conversion.jobs, trace)
    write_sites(sites, conversion.sites)
    started = time.perf_counter()
    modes = run(trace, sites, MODES)
    seconds = time.perf_counter() - started
    total = sum(p.cards for s in conversion.sites for p in s.pools)
    return SimulationBench(modes, seconds, total, peak_cards(trace), dict(conversion.skipped), conversion.fractional)


def render(bench: SimulationBench) -> str:
    header = (
        f"{'mode':<10} {'jobs':>5} {'unsched':>7} {'mean wait s':>11} {'p95 wait s':>10} {'mean JCT s':>10}"
        f" {'util %':>6} {'window util %':>13}"
    )
    lines = [
        f"simulator: alibaba-openb default pod list, {CENTRES} centres (seed {SEED}, homes {HOMES_BY}),"
        f" {NODE_SHARE:.0%} of the nodes = {bench.total_cards:,} cards, submit times / {TIME_COMPRESSION:g};"
        f" all three modes in {bench.seconds:.1f} s",
        header,
    ]
    for mode in MODES:
        f = bench.modes[mode]
        lines.append(
            f"{mode:<10} {f['jobs']:>5} {f['unschedulable']:>7} {f['mean_wait_s']:>11.1f} {f['p95_wait_s']:>10.1f}"
            f" {f['mean_jct_s']:>10.1f} {100 * f['utilisation']:>6.2f} {100 * f['window_utilisation']:>13.1f}"
        )
    first, second = bench.verdicts()
    vs_pooled, vs_siloed = (f"{r:.2f} x" if r is not None else "n/a" for r in bench.ratios())
    lines += [
        f"  target federated mean wait <= {VS_POOLED} x pooled: {vs_pooled}, {first}",
        f"  target federated mean wait far below siloed (<= {VS_SILOED} x): {vs_siloed}, {second}",
        f"  peak concurrent demand if nothing waited: {bench.peak_cards:,} of {bench.total_cards:,} cards;"
        f" {bench.fractional:,} fractional pods counted as one card; skipped pods: {bench.skipped}",
    ]
    return "\n".join(lines)
