"""Every benchmark by name, the summary keys each one owns, and how to load it without importing the others.

Owns: the catalogue (`BENCHMARKS`), the 13 summary keys of `results/latest.json` (`SUMMARY_KEYS`) and which
benchmark owns which, the interface a benchmark module follows, and adapters for the modules written before
it. It does not run anything: `bench.__main__` does, and `bench.report` writes what came out.

The interface: a module `bench/<name>.py` with

    def run(workdir: Path, progress: Callable[[str], None]) -> R

where `R` has `to_json() -> dict[str, Any]` (the detail, stored under the benchmark's name), `summary() ->
dict[str, float | None]` (only its own dotted keys, None for a figure it could not measure) and `render() ->
str` (a small table: the baseline beside the figure, the target with met/missed). `R` may also have a
`correct: bool` (False when a call failed or a job was lost: the exit code becomes 1). Benchmarks that take
the command line's load plan (`--jobs`, `--concurrency`, ...) say so with `takes_plan` and also accept
`plan=` and `concurrency=`.

A module is imported only when its benchmark runs, so a tree without one (bench16b's modules before the
merge) still runs the rest: the benchmark is reported "not in this tree", its keys carried over or null.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

Progress = Callable[[str], None]


class Result(Protocol):
    def to_json(self) -> dict[str, Any]: ...

    def summary(self) -> dict[str, float | None]: ...

    def render(self) -> str: ...


RunFn = Callable[..., Result]


class BenchmarkAbsent(Exception):
    """The benchmark's module is not in this tree (or has no `run`). The message says which."""


@dataclass(frozen=True)
class Benchmark:
    name: str
    owns: tuple[str, ...]  # the summary keys it reports, in SUMMARY_KEYS order
    about: str  # one line for `--help` and the progress line
    takes_plan: bool = False  # `run` also takes plan= and concurrency= from the command line
    adapter: Callable[[ModuleType], RunFn] | None = None  # for a module without `run`

    def load(self) -> RunFn:
        """The benchmark's `run`, importing its module now. Raises BenchmarkAbsent."""
        module_name = f"bench.{self.name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise  # the module is here but needs something missing: a real error, not an absence
            raise BenchmarkAbsent(f"bench/{self.name}.py is not in this tree") from None
        run = getattr(module, "run", None)
        # Its own `run`, not one it imported (bench.simulation imports the simulator's `run`).
        if callable(run) and getattr(run, "__module__", None) == module_name:
            return run  # type: ignore[no-any-return]
        if self.adapter is not None:
            return self.adapter(module)
        raise BenchmarkAbsent(f"bench/{self.name}.py has no run(workdir, progress)")


@dataclass(frozen=True)
class _Adapted:
    """A result of a module written before the interface: its own object, rendered and summarised here."""

    detail: Any  # the module's result object, which has to_json()
    text: str
    figures: dict[str, float | None]

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = self.detail.to_json()
        return document

    def summary(self) -> dict[str, float | None]:
        return dict(self.figures)

    def render(self) -> str:
        return self.text


def _cycle(module: ModuleType) -> RunFn:
    def run(workdir: Path, progress: Progress) -> Result:
        progress("one scheduling cycle, 10,000 queued jobs over 1,000 sites (minutes while it is slow)")
        result = module.run_cycle_benchmark()
        # cycle.incremental_ms comes with the incremental cycle (cycle16), which gives bench/cycle.py a `run`.
        figures: dict[str, float | None] = {"cycle.median_s": result.median, "cycle.incremental_ms": None}
        return _Adapted(result, module.render(result), figures)

    return run


def _simulation(module: ModuleType) -> RunFn:
    def run(workdir: Path, progress: Progress) -> Result:
        progress("simulator on the alibaba-openb trace, 8 centres, three modes")
        result = module.run_simulation_benchmark(workdir)
        return _Adapted(result, module.render(result), {})

    return run


def _takeover(module: ModuleType) -> RunFn:
    def run(workdir: Path, progress: Progress) -> Result:
        progress("leader takeover: two gateway processes on a throw-away PostgreSQL, kill -9 and SIGTERM")
        result = module.run_takeover_benchmark(workdir / "takeover")
        return _Adapted(result, module.render(result), {})

    return run


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "admission",
            ("admission.jobs_per_s", "admission.vs_echo", "admission.p99_ms_half_load"),
            "durable CreateJob on SQLite next to a bare grpc.aio echo; p99 open loop at half load",
            takes_plan=True,
        ),
        Benchmark(
            "admission_postgres",
            ("admission_postgres.vs_sqlite",),
            "the same durable admission on a throw-away PostgreSQL, alternating with SQLite",
            takes_plan=True,
        ),
        Benchmark(
            "slurm",
            ("slurm.submit_jobs_per_s", "slurm.fedgate_vs_slurm"),
            "sbatch --hold into a one-node Slurm, 4 submitters, next to fedgate admission with 4 callers",
        ),
        Benchmark(
            "cycle",
            ("cycle.median_s", "cycle.incremental_ms"),
            "one scheduling cycle over 10,000 queued jobs and 1,000 sites",
            adapter=_cycle,
        ),
        Benchmark("dispatch", ("dispatch.p99_ms",), "dispatch latency to connected agents"),
        Benchmark("end_to_end", ("end_to_end.jobs_per_s",), "jobs through gateway and agents, end to end"),
        Benchmark("ingest", ("ingest.reports_per_s",), "capacity reports ingested from agents"),
        Benchmark("gangs", ("gangs.reservations_per_s",), "gang reservations"),
        Benchmark("memory", ("memory.gateway_rss_mb",), "the gateway's resident memory"),
        Benchmark("simulation", (), "the simulator on the Alibaba openb trace", adapter=_simulation),
        Benchmark(
            "simulation_twin",
            (),
            "the what-if twin beside the greedy replay, siloed / federated / pooled: openb and an imbalanced case",
        ),
        Benchmark("takeover", (), "leader takeover on PostgreSQL", adapter=_takeover),
    )
}

SUMMARY_KEYS: tuple[str, ...] = (
    "admission.jobs_per_s",
    "admission.vs_echo",
    "admission.p99_ms_half_load",
    "admission_postgres.vs_sqlite",
    "slurm.submit_jobs_per_s",
    "slurm.fedgate_vs_slurm",
    "cycle.median_s",
    "cycle.incremental_ms",
    "dispatch.p99_ms",
    "end_to_end.jobs_per_s",
    "ingest.reports_per_s",
    "gangs.reservations_per_s",
    "memory.gateway_rss_mb",
)
assert sorted(SUMMARY_KEYS) == sorted(k for b in BENCHMARKS.values() for k in b.owns), "a key without an owner"


def owned_keys(name: str) -> tuple[str, ...]:
    """The summary keys benchmark `name` reports; () for an unknown name."""
    benchmark = BENCHMARKS.get(name)
    return benchmark.owns if benchmark else ()
