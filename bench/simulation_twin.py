"""The twin beside the greedy replay: siloed, federated and pooled, on the Alibaba federation and on an imbalanced one.

Owns: two cases, each replayed by both engines in the three modes through `fedgate simulate`'s own code paths
(`gateway.cli.simulate.run` for the greedy engine, `gateway.simulate.twin.replay` for the twin), and the table.
- `alibaba`: the trace and centres of `bench.simulation` (its conversion and settings: 8 centres, seed 1, a
  tenth of the nodes, submit times / 100), the twin under `POLICY` (one tenant, one project, one priority
  class: nothing but the gateway's own cycle, FIFO with backfill, decides) and a catalogue of the trace's
  pseudo classes (`catalogue_text`).
- `imbalanced`: `imbalanced_trace`, a small synthetic federation whose homes are skewed (most work arrives at
  one centre of four) and whose jobs mix sizes, the case where backfill and federation should both show.
The issue-17 question each answers: is the twin's federated mean wait below the greedy FIFO pooled reference?
`python -m bench simulation_twin` runs it in the harness; `python -m bench.simulation_twin OUT.json` alone.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import simulation as greedy_bench
from gateway.app.config import REPO_POLICIES
from gateway.cli.simulate import run as greedy_run
from gateway.policy import load_catalogue
from gateway.simulate import MODES, alibaba, load_sites, load_trace, write_sites, write_trace
from gateway.simulate.report import percentile
from gateway.simulate.sites import PoolSpec, SiteSpec
from gateway.simulate.trace import TraceJob
from gateway.simulate.twin import replay
from gateway.simulate.twinjobs import TwinResult
from gateway.simulate.twinreport import summarise_twin

POLICY = """\
apiVersion: fedgate.io/v1
kind: Federation
metadata: {name: bench-twin}
tenants:
  - name: trace
    projects: [{name: jobs}]
priority_classes:
  - {name: normal, priority: 50, default: true}
"""
PERIOD_S = 60.0
"""The twin's scheduler period. Every arrival and every end runs a cycle at its instant whatever the period; the
period only adds cycles while jobs wait, for what time alone changes (aging, lapses), which with one tenant and
one class is nothing that moves a job here: the Alibaba federated figures are the same at 1 s (measured) and
the run is faster."""
HARNESS_PODS = 4000
"""`make bench` replays the first this many jobs of the converted Alibaba trace (by submit time) with the twin:
the whole trace takes about 15 minutes on this machine; `python -m bench.simulation_twin --full` runs it all."""

# The imbalanced federation: 4 centres of 32 H100 cards (8 a node); 1,200 jobs of 1-16 cards (mean 3.6),
# exponential durations (mean 30 min, at most 6 h), Poisson arrivals for about 85 % of all 128 cards, homed
# 55 / 25 / 12 / 8 % at the four centres: the first is loaded far beyond its 32 cards, the last nearly idle.
IMBALANCED_JOBS, IMBALANCED_SEED = 1200, 17
IMBALANCED_CENTRES = 4
IMBALANCED_CARDS = 32
IMBALANCED_HOMES = (0.55, 0.25, 0.12, 0.08)
IMBALANCED_SIZES = ((1, 0.4), (2, 0.2), (4, 0.2), (8, 0.15), (16, 0.05))
IMBALANCED_MEAN_S, IMBALANCED_MAX_S, IMBALANCED_LOAD = 1800.0, 6 * 3600.0, 0.85
H100 = "nvidia-h100"


def imbalanced_trace(
    jobs: int = IMBALANCED_JOBS, seed: int = IMBALANCED_SEED, per_node: int = 8
) -> tuple[tuple[TraceJob, ...], tuple[SiteSpec, ...]]:
    """The imbalanced case's trace and centres (deterministic for a seed; see the constants above). `per_node`
    32 makes each centre one node: the greedy engine does not model nodes (its cards are fungible), the twin
    packs them as an agent does, so that variant compares the two without node fragmentation."""
    rng = random.Random(f"imbalanced:{seed}")
    sites = tuple(
        SiteSpec(f"centre-{i}", f"region-{i}", (PoolSpec(H100, IMBALANCED_CARDS, per_node),))
        for i in range(IMBALANCED_CENTRES)
    )
    mean_cards = sum(c * p for c, p in IMBALANCED_SIZES)
    rate = IMBALANCED_LOAD * IMBALANCED_CARDS * IMBALANCED_CENTRES / (mean_cards * IMBALANCED_MEAN_S)
    out, at = [], 0.0
    for i in range(jobs):
        at += rng.expovariate(rate)
        (cards,) = rng.choices([c for c, _ in IMBALANCED_SIZES], [p for _, p in IMBALANCED_SIZES])
        duration = min(IMBALANCED_MAX_S, max(60.0, round(rng.expovariate(1 / IMBALANCED_MEAN_S))))
        (home,) = rng.choices([s.name for s in sites], IMBALANCED_HOMES)
        out.append(TraceJob(f"imb-{i:05d}", round(at, 1), duration, cards, H100, home))
    return tuple(out), sites


def catalogue_text(classes: set[str]) -> str:
    """An accelerator catalogue of the given pseudo classes (the Alibaba trace's models; no figures known)."""
    lines = ["apiVersion: fedgate.io/v1", "kind: AcceleratorCatalogue", "accelerators:"]
    for cls in sorted(classes):
        lines.append(
            f"  - {{id: {cls}, vendor: unknown, family: alibaba-openb, memory_gib: 0, bf16_tflops: 0, stack: cuda}}"
        )
    return "\n".join(lines) + "\n"


def twin_window_utilisation(result: TwinResult, jobs: tuple[TraceJob, ...]) -> float:
    """The greedy report's window utilisation (`gateway.simulate.report.window_utilisation`) over the twin's
    outcomes: busy card-seconds inside [p5 submit, p95 submit] of the started jobs / (all cards x that window)."""
    ran = [o for o in result.outcomes if o.start_s is not None]
    submits = [o.submit_s for o in ran]
    start, end = percentile(submits, 0.05), percentile(submits, 0.95)
    if end <= start or not result.total_cards:
        return 0.0
    ends = {j.job_id: j.duration_s for j in jobs}
    busy = 0.0
    for o in ran:
        assert o.start_s is not None
        finish = o.end_s if o.end_s is not None else o.start_s + ends[o.job_id]
        busy += o.cards * max(0.0, min(finish, end) - max(o.start_s, start))
    return busy / (result.total_cards * (end - start))


@dataclass
class Case:
    name: str
    about: str
    jobs: int
    cards: int
    greedy: dict[str, dict[str, Any]] = field(default_factory=dict)
    twin: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def verdict(self) -> tuple[float | None, str]:
        """Twin federated mean wait / greedy pooled's, and what that says."""
        fed, pooled = self.twin["federated"]["mean_wait_s"], self.greedy["pooled"]["mean_wait_s"]
        if not pooled:
            return None, "greedy pooled waits 0 s: nothing to be below"
        ratio = fed / pooled
        return ratio, "below" if ratio < 1 else "NOT below"

    def to_json(self) -> dict[str, Any]:
        ratio, word = self.verdict()
        return {
            "about": self.about,
            "jobs": self.jobs,
            "total_cards": self.cards,
            "seconds": self.seconds,
            "greedy": self.greedy,
            "twin": self.twin,
            "twin_federated_vs_greedy_pooled_mean_wait": ratio,
            "verdict": word,
        }


async def _twin(case: Case, policy: Path, catalogue: Path, jobs: tuple[TraceJob, ...], sites: Any) -> None:
    cat = load_catalogue(catalogue)
    for mode in MODES:
        started = time.perf_counter()
        result = await replay(policy, cat, jobs, sites, mode, period_s=PERIOD_S)
        case.seconds[f"twin {mode}"] = round(time.perf_counter() - started, 1)
        report = summarise_twin(result)
        case.twin[mode] = {
            **report["total"],
            "makespan_s": report["makespan_s"],
            "window_utilisation": twin_window_utilisation(result, jobs),
            "cycles": report["cycles"],
        }


def _greedy(case: Case, trace: Path, sites: Path) -> None:
    started = time.perf_counter()
    case.greedy = greedy_run(trace, sites, MODES)
    case.seconds["greedy all"] = round(time.perf_counter() - started, 1)


def alibaba_case(workdir: Path, pods: int | None = HARNESS_PODS) -> Case:
    conversion = alibaba.convert(
        alibaba.read_pods(greedy_bench.PODS),
        alibaba.read_nodes(greedy_bench.NODES),
        greedy_bench.CENTRES,
        greedy_bench.SEED,
        node_share=greedy_bench.NODE_SHARE,
        time_compression=greedy_bench.TIME_COMPRESSION,
        homes_by=greedy_bench.HOMES_BY,
    )
    trace, sites = workdir / "openb-trace.csv", workdir / "openb-sites.yaml"
    jobs = tuple(sorted(conversion.jobs, key=lambda j: j.submit_s))[:pods] if pods else conversion.jobs
    write_trace(jobs, trace)
    write_sites(sites, conversion.sites)
    policy, catalogue = workdir / "policy.yaml", workdir / "catalogue.yaml"
    policy.write_text(POLICY)
    catalogue.write_text(catalogue_text({p.accelerator_class for s in conversion.sites for p in s.pools}))
    cards = sum(p.cards for s in conversion.sites for p in s.pools)
    about = (
        f"alibaba-openb default pod list, {greedy_bench.CENTRES} centres (seed {greedy_bench.SEED}), "
        f"{greedy_bench.NODE_SHARE:g} of the nodes, submit times / {greedy_bench.TIME_COMPRESSION:g}"
        + (f"; the first {len(jobs):,} of its {len(conversion.jobs):,} jobs by submit time" if pods else "")
    )
    case = Case("alibaba", about, len(jobs), cards)
    _greedy(case, trace, sites)
    asyncio.run(_twin(case, policy, catalogue, load_trace(trace), load_sites(sites)))
    return case


def imbalanced_case(workdir: Path) -> Case:
    jobs, site_specs = imbalanced_trace()
    trace, sites = workdir / "imbalanced-trace.csv", workdir / "imbalanced-sites.yaml"
    write_trace(jobs, trace)
    write_sites(sites, site_specs)
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    about = (
        f"synthetic: {IMBALANCED_CENTRES} centres x {IMBALANCED_CARDS} H100 cards, homes"
        f" {'/'.join(f'{h:.0%}' for h in IMBALANCED_HOMES)}, 1-16 cards, ~{IMBALANCED_LOAD:.0%} load (seed"
        f" {IMBALANCED_SEED})"
    )
    case = Case("imbalanced", about, len(jobs), IMBALANCED_CENTRES * IMBALANCED_CARDS)
    _greedy(case, trace, sites)
    asyncio.run(_twin(case, policy, REPO_POLICIES / "accelerators.yaml", jobs, site_specs))
    return case


@dataclass(frozen=True)
class TwinBench:
    cases: tuple[Case, ...]

    def to_json(self) -> dict[str, Any]:
        return {"period_s": PERIOD_S, "cases": {c.name: c.to_json() for c in self.cases}}

    def summary(self) -> dict[str, float | None]:
        return {}

    def render(self) -> str:
        lines = []
        for case in self.cases:
            lines += [
                f"{case.name}: {case.about}; {case.jobs:,} jobs, {case.cards:,} cards",
                f"{'engine':<7} {'mode':<10} {'mean wait s':>11} {'p95 wait s':>10} {'util %':>6}"
                f" {'window util %':>13} {'not run':>7}",
            ]
            for engine, figures in (("greedy", case.greedy), ("twin", case.twin)):
                for mode in MODES:
                    f = figures[mode]
                    missing = f["unschedulable"] if engine == "greedy" else f["rejected"] + f["never_started"]
                    lines.append(
                        f"{engine:<7} {mode:<10} {f['mean_wait_s']:>11.1f} {f['p95_wait_s']:>10.1f}"
                        f" {100 * f['utilisation']:>6.2f} {100 * f['window_utilisation']:>13.1f} {missing:>7}"
                    )
            ratio, word = case.verdict()
            shown = f"{ratio:.2f} x" if ratio is not None else "n/a"
            lines.append(f"  twin federated mean wait vs greedy pooled: {shown} ({word}); seconds: {case.seconds}")
        return "\n".join(lines)


def run(workdir: Path, progress: Any, pods: int | None = HARNESS_PODS) -> TwinBench:
    workdir.mkdir(parents=True, exist_ok=True)
    cases = []
    for name in ("alibaba", "imbalanced"):
        progress(f"simulation_twin: {name}, greedy and twin, three modes")
        folder = workdir / name
        folder.mkdir(exist_ok=True)
        cases.append(alibaba_case(folder, pods) if name == "alibaba" else imbalanced_case(folder))
    return TwinBench(tuple(cases))


def main(argv: list[str]) -> int:
    """`python -m bench.simulation_twin [--full] [OUT.json]`: the table, and the JSON to OUT.json."""
    import tempfile

    full = "--full" in argv
    rest = [a for a in argv if a != "--full"]
    with tempfile.TemporaryDirectory(prefix="fedgate-twinbench-") as tmp:
        bench = run(Path(tmp), lambda m: print(m, file=sys.stderr, flush=True), None if full else HARNESS_PODS)
    print(bench.render())
    if rest:
        Path(rest[0]).write_text(json.dumps(bench.to_json(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
