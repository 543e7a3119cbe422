"""`fedgate simulate`: replay a GPU-cluster trace siloed, federated and pooled; convert public traces.

A thin shell over `gateway.simulate`: read the files, run the modes, print table, JSON or YAML. Two engines:
`twin` (`gateway.simulate.twin`: the gateway's own core under the policy given, the default when `--policy` is
given) and `greedy` (`gateway.simulate.engine`: placement alone, FIFO; the default without `--policy`, with
the figures and output it always had). With `--compare`, `--compare-sites` or `--compare-centres` it runs the
twin twice, under A and B, and prints both and the change (`gateway.simulate.whatif`). Nothing here talks to a
gateway. Exit codes: 0 done, 2 bad usage or a bad input file (the message names file and line).

Owns: the arguments and printing of the simulator's commands (`fedgate simulate`, `convert-alibaba`,
`convert-philly`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from gateway.app.config import REPO_POLICIES
from gateway.cli import output
from gateway.errors import GatewayError
from gateway.policy import load_catalogue, load_policy
from gateway.policy.catalogue import Catalogue
from gateway.simulate import (
    MODES,
    OPTIONAL_COLUMNS,
    TRACE_HEADER,
    Mode,
    SiteSpec,
    TraceJob,
    load_sites,
    load_trace,
    simulate,
    summarise,
    write_sites,
    write_trace,
)
from gateway.simulate.centres import CentrePolicy, check_centres, load_centres
from gateway.simulate.engine import check_trace
from gateway.simulate.twin import replay_sync
from gateway.simulate.twinreport import summarise_twin
from gateway.simulate.whatif import compare

EXIT_OK, EXIT_USAGE = 0, 2
COLUMNS: list[output.Column] = [
    ("mode", "MODE"),
    ("jobs", "JOBS"),
    ("unschedulable", "UNSCHEDULABLE"),
    ("mean_wait_s", "MEAN WAIT S"),
    ("p95_wait_s", "P95 WAIT S"),
    ("mean_jct_s", "MEAN JCT S"),
    ("utilisation", "UTILISATION"),
    ("window_utilisation", "WINDOW UTILISATION"),
]
TWIN_COLUMNS: list[output.Column] = [
    ("mode", "MODE"),
    ("by", "BY"),
    ("group", "GROUP"),
    ("jobs", "JOBS"),
    ("started", "STARTED"),
    ("rejected", "REJECTED"),
    ("never_started", "NEVER STARTED"),
    ("preemptions", "PREEMPTED"),
    ("mean_wait_s", "MEAN WAIT S"),
    ("p95_wait_s", "P95 WAIT S"),
    ("card_hours", "CARD-HOURS"),
    ("utilisation", "UTILISATION"),
]

WHATIF_DIGITS = {
    "mean_wait_s": 0,
    "p95_wait_s": 0,
    "utilisation": 2,
    "card_hours": 1,
    "rejected": 0,
    "never_started": 0,
}
"""The figures of a what-if table and the decimals each is shown with."""
WHATIF_COLUMNS: list[output.Column] = [
    ("mode", "MODE"),
    ("by", "BY"),
    ("name", "GROUP"),
    ("jobs", "JOBS"),
    ("mean_wait_s_ab", "MEAN WAIT S (A -> B)"),
    ("p95_wait_s_ab", "P95 WAIT S (A -> B)"),
    ("utilisation_ab", "UTILISATION (A -> B)"),
    ("card_hours_ab", "CARD-HOURS (A -> B)"),
    ("rejected_ab", "REJECTED (A -> B)"),
    ("never_started_ab", "NEVER STARTED (A -> B)"),
]
COMPARE_FLAGS = ("compare", "compare_sites", "compare_centres")


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedgate simulate",
        description="Replay a trace on a simulated clock. Siloed: each job only at its home site; federated:"
        " placed across all sites; pooled: one ideal cluster with every card. With --policy, the twin engine runs"
        " the gateway's own scheduler (admission, quotas, priorities, fair share, backfill, preemption, gangs,"
        " nodes) against simulated sites; without, the greedy engine runs placement alone."
        " Also: `fedgate simulate convert-alibaba --help`, `fedgate simulate convert-philly --help`.",
    )
    parser.add_argument(
        "--trace",
        type=Path,
        required=True,
        help=f"CSV: {','.join(TRACE_HEADER)}, then any of {','.join(OPTIONAL_COLUMNS)} (the greedy engine ignores"
        " them)",
    )
    parser.add_argument("--sites", type=Path, required=True, help="YAML: sites: [{name, region, pools: [...]}]")
    parser.add_argument(
        "--mode", choices=(*MODES, "all"), help="default: all; with --compare*: federated (all: each mode compared)"
    )
    parser.add_argument("--engine", choices=("twin", "greedy"), help="default: twin with --policy, else greedy")
    parser.add_argument("--policy", type=Path, help="the federation policy the twin decides under (YAML)")
    parser.add_argument(
        "--catalogue",
        type=Path,
        default=REPO_POLICIES / "accelerators.yaml",
        help="the accelerator catalogue (twin; default: the shipped one)",
    )
    parser.add_argument(
        "--centres", type=Path, help="twin: YAML of each centre's terms and offer windows (an agent's policy: keys)"
    )
    parser.add_argument("--tenant", default="", help="twin: tenant of jobs that name none (default: the first)")
    parser.add_argument("--project", default="", help="twin: project of jobs that name none (default: its first)")
    parser.add_argument(
        "--period",
        type=float,
        default=1.0,
        help="twin: the scheduler's period, s (default 1, the gateway's): while jobs wait it cycles once a period"
        " besides every event; a longer one replays a long, crowded trace faster, with aging and lapsing earmarks"
        " acted on that much later",
    )
    parser.add_argument("--jobs", action="store_true", help="twin: list every job (table), not only the summary")
    whatif = parser.add_argument_group(
        "what if (twin)",
        "run the twin twice on the same trace, under A (the inputs above) and B (A with each file given here in"
        " place of its own), and print A, B and the change per tenant, accelerator class and priority class",
    )
    whatif.add_argument("--compare", type=Path, metavar="POLICY", help="B's federation policy (instead of --policy)")
    whatif.add_argument("--compare-sites", type=Path, metavar="SITES", help="B's sites file (instead of --sites)")
    whatif.add_argument(
        "--compare-centres", type=Path, metavar="CENTRES", help="B's centres file (instead of --centres; A: none)"
    )
    output.add_output_flag(parser)
    return parser


def _convert_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedgate simulate convert-alibaba",
        description="Turn the Alibaba GPU trace (openb pod and node lists) into a trace and a sites file: nodes"
        " dealt at random into N centres, each pod given a random home centre that could run it.",
    )
    parser.add_argument("--pods", type=Path, required=True, help="openb_pod_list_*.csv (with times)")
    parser.add_argument("--nodes", type=Path, required=True, help="openb_node_list_gpu_node.csv")
    parser.add_argument("--centres", type=int, default=8, help="default: 8")
    parser.add_argument("--seed", type=int, default=1, help="default: 1")
    parser.add_argument(
        "--node-share",
        type=float,
        default=1.0,
        help="keep this share of the trace's nodes, chosen at random with the seed (0 < share <= 1; default 1)",
    )
    parser.add_argument(
        "--time-compression",
        type=float,
        default=1.0,
        help="divide every submit time by this (>= 1): arrivals that many times as dense (default 1)",
    )
    parser.add_argument(
        "--tenants",
        type=_names("tenant"),
        default=(),
        help="comma-separated tenants: each job gets one at random with the seed (default: none stated)",
    )
    parser.add_argument(
        "--projects",
        type=_names("project"),
        default=(),
        help="comma-separated projects: each job gets one at random (needs --tenants; default <tenant>-default)",
    )
    parser.add_argument(
        "--gang-share",
        type=float,
        default=0.0,
        help="mark this share of the multi-card jobs, at random with the seed, as gangs that may span 2 centres"
        " (0 <= share <= 1; default 0)",
    )
    parser.add_argument("--out-trace", type=Path, required=True)
    parser.add_argument("--out-sites", type=Path, required=True)
    return parser


def _philly_parser() -> argparse.ArgumentParser:
    from gateway.simulate import philly

    parser = argparse.ArgumentParser(
        prog="fedgate simulate convert-philly",
        description="Turn a Philly/Gavel-style per-job CSV (a job id, submit time, duration, GPU count and"
        " virtual cluster per row) into a trace and a sites file: each virtual cluster one centre and one tenant.",
    )
    parser.add_argument("--jobs", type=Path, required=True, help="the per-job CSV")
    parser.add_argument("--out-trace", type=Path, required=True)
    parser.add_argument("--out-sites", type=Path, required=True)
    parser.add_argument(
        "--cards-per-vc",
        type=int,
        default=None,
        help="cards at every centre (default: the VC's peak concurrent demand, rounded up to 8-card nodes)",
    )
    parser.add_argument(
        "--accelerator",
        default=philly.DEFAULT_ACCELERATOR,
        help=f"the class of every centre's pool (default {philly.DEFAULT_ACCELERATOR})",
    )
    parser.add_argument(
        "--time-compression",
        type=float,
        default=1.0,
        help="divide every submit time by this (>= 1): arrivals that many times as dense (default 1)",
    )
    return parser


def _names(kind: str) -> Any:
    """An argparse type: a comma-separated list of tenant or project names, each valid, none twice."""
    from gateway.simulate.alibaba import name_list_problem

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(","))
        problem = name_list_problem(kind, names)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return names

    parse.__name__ = f"{kind} list"
    return parse


def run(trace: Path, sites_path: Path, modes: Sequence[Mode]) -> dict[str, dict[str, Any]]:
    """The figures of each mode, keyed by mode (the `modes` object of `-o json`)."""
    jobs, sites = load_trace(trace), load_sites(sites_path)
    check_trace(jobs, sites, str(trace))
    return {mode: summarise(simulate(jobs, sites, mode)).to_json() for mode in modes}


@dataclass(frozen=True)
class _TwinInputs:
    """One scenario's files, read and checked (the policy too, so that a bad B fails before A is run)."""

    policy: Path
    catalogue: Catalogue
    jobs: tuple[TraceJob, ...]
    sites: tuple[SiteSpec, ...]
    centres: dict[str, CentrePolicy]


def _read_inputs(args: argparse.Namespace, scenario: dict[str, Path | None]) -> _TwinInputs:
    policy, sites_path, centres_path = scenario["policy"], scenario["sites"], scenario["centres"]
    assert policy is not None and sites_path is not None
    jobs, sites = load_trace(args.trace), load_sites(sites_path)
    check_trace(jobs, sites, str(args.trace))
    load_policy(policy)
    centres = load_centres(centres_path) if centres_path else {}
    check_centres(centres, sites, str(centres_path))
    return _TwinInputs(policy, load_catalogue(args.catalogue), tuple(jobs), tuple(sites), centres)


def run_twin(
    args: argparse.Namespace, modes: Sequence[Mode], inputs: _TwinInputs | None = None
) -> dict[str, dict[str, Any]]:
    """The twin's figures of each mode, keyed by mode (the `modes` object of `-o json`), from the files of
    `args` or the `inputs` given."""
    given = inputs or _read_inputs(args, scenario_inputs(args))
    return {
        mode: summarise_twin(
            replay_sync(
                given.policy,
                given.catalogue,
                given.jobs,
                given.sites,
                mode,
                centres=given.centres,
                tenant=args.tenant,
                project=args.project,
                period_s=args.period,
            )
        )
        for mode in modes
    }


def scenario_inputs(args: argparse.Namespace, *, b: bool = False) -> dict[str, Path | None]:
    """The files of scenario A (the run's own), or of B (A with each `--compare*` file in place of its own)."""
    inputs: dict[str, Path | None] = {
        "policy": args.policy or REPO_POLICIES / "federation.yaml",
        "sites": args.sites,
        "centres": args.centres,
    }
    if b:
        for key, flag in (("policy", args.compare), ("sites", args.compare_sites), ("centres", args.compare_centres)):
            if flag is not None:
                inputs[key] = flag
    return inputs


def compared(args: argparse.Namespace, modes: Sequence[Mode]) -> dict[str, Any]:
    """The what-if answer (the record of `-o json`): A's and B's inputs and the compared groups of each mode."""
    a_inputs, b_inputs = scenario_inputs(args), scenario_inputs(args, b=True)
    read_a, read_b = _read_inputs(args, a_inputs), _read_inputs(args, b_inputs)  # both checked before either runs
    a, b = run_twin(args, modes, read_a), run_twin(args, modes, read_b)
    common = {"trace": str(args.trace), "catalogue": str(args.catalogue), "modes": list(modes)}

    def shown(inputs: dict[str, Path | None]) -> dict[str, Any]:
        return {**common, **{k: None if v is None else str(v) for k, v in inputs.items()}}

    groups = [{"mode": mode, **g} for mode in modes for g in compare(a[mode], b[mode])]
    return {"engine": "twin", "a": shown(a_inputs), "b": shown(b_inputs), "groups": groups}


def _arrow(a: float, b: float, change: float, pct: float | None, digits: int) -> str:
    """`a -> b (change)`: the relative change in % when there is one, else the signed difference; no change
    shown when it rounds to nothing."""
    text = f"{a:.{digits}f} -> {b:.{digits}f}"
    shown = f"{pct:+.0f}%" if pct is not None else f"{change:+.{digits}f}"
    return text if not change or shown.lstrip("+-").rstrip("%").strip("0.") == "" else f"{text} ({shown})"


def _whatif_table(record: dict[str, Any]) -> str:
    rows = []
    for g in record["groups"]:
        a, b, d = g["a"], g["b"], g["change"]
        cells = {f"{m}_ab": _arrow(a[m], b[m], d[m], d.get(f"{m}_pct"), digits) for m, digits in WHATIF_DIGITS.items()}
        jobs = str(a["jobs"]) if a["jobs"] == b["jobs"] else f"{a['jobs']} -> {b['jobs']}"
        rows.append({"mode": g["mode"], "by": g["by"], "name": g["name"], "jobs": jobs, **cells})
    changed = ", ".join(
        f"{k} {record['a'][k] or 'none'} -> {record['b'][k]}"
        for k in ("policy", "sites", "centres")
        if record["a"][k] != record["b"][k]
    )
    return f"B = A with {changed}\n" + output.render(rows, WHATIF_COLUMNS, "table")


def _twin_table(figures: dict[str, dict[str, Any]], jobs: bool) -> str:
    rows = []
    for mode, run in figures.items():
        rows.append({"mode": mode, "by": "all", **run["total"]})
        rows.extend({"mode": mode, "by": "tenant", **g} for g in run["tenants"])
        rows.extend({"mode": mode, "by": "class", **g} for g in run["classes"])
    text = output.render(rows, TWIN_COLUMNS, "table")
    if jobs:
        columns: list[output.Column] = [
            ("mode", "MODE"),
            ("job_id", "JOB"),
            ("tenant", "TENANT"),
            ("cards", "CARDS"),
            ("submit_s", "SUBMIT S"),
            ("start_s", "START S"),
            ("end_s", "END S"),
            ("sites", "SITES"),
            ("state", "STATE"),
            ("reason", "REASON"),
        ]
        listed = [
            {"mode": m, **j, "sites": ",".join(j["sites"]), "reason": j["reason"][:60]}
            for m, run in figures.items()
            for j in run["jobs"]
        ]
        text += "\n\n" + output.render(listed, columns, "table")
    return text


def _convert(argv: Sequence[str]) -> int:
    from gateway.simulate import alibaba

    args = _convert_parser().parse_args(argv)
    problem = (
        "--centres must be at least 1"
        if args.centres < 1
        else "--node-share must be above 0 and at most 1"
        if not 0 < args.node_share <= 1
        else "--time-compression must be at least 1"
        if not args.time_compression >= 1
        else "--gang-share must be at least 0 and at most 1"
        if not 0 <= args.gang_share <= 1
        else "--projects needs --tenants: a project belongs to a tenant"
        if args.projects and not args.tenants
        else ""
    )
    if problem:
        print(f"fedgate simulate convert-alibaba: {problem}", file=sys.stderr)
        return EXIT_USAGE
    conversion = alibaba.convert(
        alibaba.read_pods(args.pods),
        alibaba.read_nodes(args.nodes),
        args.centres,
        args.seed,
        node_share=args.node_share,
        time_compression=args.time_compression,
        tenants=args.tenants,
        projects=args.projects,
        gang_share=args.gang_share,
    )
    write_trace(conversion.jobs, args.out_trace)
    write_sites(args.out_sites, conversion.sites)
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(conversion.skipped.items())) or "none"
    gangs = sum(1 for j in conversion.jobs if j.max_sites > 1)
    print(
        f"{len(conversion.jobs)} jobs to {args.out_trace} ({conversion.fractional} fractional pods counted as one"
        f" card; skipped: {skipped}"
        + (f"; {len(args.tenants)} tenants" if args.tenants else "")
        + (f"; {gangs} gangs over up to 2 centres" if args.gang_share else "")
        + f"); {len(conversion.sites)} centres to {args.out_sites}"
    )
    return EXIT_OK


def _convert_philly(argv: Sequence[str]) -> int:
    from gateway.simulate import philly
    from gateway.simulate.sites import NAME, NAME_HINT

    args = _philly_parser().parse_args(argv)
    problem = (
        "--cards-per-vc must be at least 1"
        if args.cards_per_vc is not None and args.cards_per_vc < 1
        else f"--accelerator {args.accelerator!r} is not a class name; {NAME_HINT}"
        if not NAME.fullmatch(args.accelerator)
        else "--time-compression must be at least 1"
        if not args.time_compression >= 1
        else ""
    )
    if problem:
        print(f"fedgate simulate convert-philly: {problem}", file=sys.stderr)
        return EXIT_USAGE
    conversion = philly.convert(
        philly.read_jobs(args.jobs),
        accelerator=args.accelerator,
        cards_per_vc=args.cards_per_vc,
        time_compression=args.time_compression,
        source=str(args.jobs),
    )
    write_trace(conversion.jobs, args.out_trace)
    write_sites(args.out_sites, conversion.sites)
    cards = ", ".join(f"{s.name} {s.cards(args.accelerator)}" for s in conversion.sites)
    print(
        f"{len(conversion.jobs)} jobs to {args.out_trace} (skipped: {conversion.zero_gpu} with zero GPUs);"
        f" {len(conversion.sites)} virtual clusters as centres to {args.out_sites} (cards of {args.accelerator}:"
        f" {cards})"
    )
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    """The group's parser, as `fedgate completion` reads it: the run's flags (the convert-* words come before
    them)."""
    return _run_parser()


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    try:
        if args_in[:1] == ["convert-alibaba"]:
            return _convert(args_in[1:])
        if args_in[:1] == ["convert-philly"]:
            return _convert_philly(args_in[1:])
        args = _run_parser().parse_args(args_in)
        comparing = any(getattr(args, f) is not None for f in COMPARE_FLAGS)
        mode: str = args.mode or ("federated" if comparing else "all")
        modes: tuple[Mode, ...] = MODES if mode == "all" else (cast(Mode, mode),)
        engine = args.engine or ("twin" if args.policy else "greedy")
        if comparing and (engine != "twin" or not args.policy):
            print(
                "fedgate simulate: --compare, --compare-sites and --compare-centres compare two runs of the twin:"
                " give --policy (A's federation policy), and not --engine greedy",
                file=sys.stderr,
            )
            return EXIT_USAGE
        if comparing:
            record = compared(args, modes)
        else:
            figures = run_twin(args, modes) if engine == "twin" else run(args.trace, args.sites, modes)
    except GatewayError as exc:
        print(f"fedgate simulate: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    if comparing:
        print(_whatif_table(record) if args.output == "table" else output.render_record(record, args.output))
        return EXIT_OK
    if engine == "twin":
        if args.output == "table":
            print(_twin_table(figures, args.jobs))
        else:
            print(output.render_record({"engine": "twin", "modes": figures}, args.output))
        return EXIT_OK
    if args.output == "table":
        print(output.render([{"mode": m, **f} for m, f in figures.items()], COLUMNS, "table"))
    else:
        print(output.render_record({"modes": figures}, args.output))
    return EXIT_OK
