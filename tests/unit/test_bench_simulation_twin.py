"""The twin-beside-greedy benchmark's own pieces: the imbalanced trace is what it says, the twin's window
utilisation is the greedy report's definition, and the harness finds the benchmark by name."""

from __future__ import annotations

import collections
from pathlib import Path

from bench.registry import BENCHMARKS
from bench.simulation_twin import (
    IMBALANCED_CARDS,
    IMBALANCED_CENTRES,
    catalogue_text,
    imbalanced_trace,
    twin_window_utilisation,
)
from gateway.policy import load_catalogue
from gateway.simulate.trace import TraceJob
from gateway.simulate.twinjobs import TwinOutcome, TwinResult


def test_the_imbalanced_trace_is_the_same_every_time_and_skewed_to_one_centre() -> None:
    jobs, sites = imbalanced_trace(400)
    assert (jobs, sites) == imbalanced_trace(400)
    assert [s.cards("nvidia-h100") for s in sites] == [IMBALANCED_CARDS] * IMBALANCED_CENTRES
    homes = collections.Counter(j.home_site for j in jobs)
    assert homes["centre-0"] > 0.45 * len(jobs) and homes["centre-3"] < 0.15 * len(jobs)
    assert all(1 <= j.cards <= 16 and j.submit_s > 0 for j in jobs)
    assert [j.submit_s for j in jobs] == sorted(j.submit_s for j in jobs)


def test_the_twins_window_utilisation_counts_only_card_seconds_inside_the_arrival_window() -> None:
    def outcome(job_id: str, submit: float, start: float | None, end: float | None) -> TwinOutcome:
        return TwinOutcome(job_id, "t", "p", "", 2, submit, 10.0, start, end, ("a",), "SUCCEEDED")

    # 20 jobs submitted at 0..19 s, each 2 cards busy from its submit for 10 s, on 4 cards: p5 = 0, p95 = 18.
    jobs = tuple(TraceJob(f"j{i}", float(i), 10.0, 2, "", "a") for i in range(20))
    outcomes = tuple(outcome(f"j{i}", i, i, i + 10) for i in range(20))
    result = TwinResult("federated", outcomes, (), 4, 0)
    busy = sum(2 * max(0.0, min(i + 10, 18) - i) for i in range(19))
    assert twin_window_utilisation(result, jobs) == busy / (4 * 18)


def test_the_generated_catalogue_loads_and_the_harness_knows_the_benchmark(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.yaml"
    path.write_text(catalogue_text({"alibaba-g2", "alibaba-t4"}))
    assert load_catalogue(path).ids == ("alibaba-g2", "alibaba-t4")
    assert BENCHMARKS["simulation_twin"].load().__module__ == "bench.simulation_twin"
    assert BENCHMARKS["simulation_twin"].owns == ()
