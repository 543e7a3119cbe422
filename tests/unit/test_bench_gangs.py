"""The gangs benchmark's pieces that can be wrong without timing: the gang job it submits, how rounds are
counted, the summary's keys. No benchmark runs here."""

from __future__ import annotations

from bench import fleet, gangs
from bench.load import RunResult


def test_a_gang_asks_for_three_whole_sites() -> None:
    plan = gangs.Plan()
    spec = fleet.job_spec(0.0, cards=plan.cards_per_site * plan.sites_per_gang, topology=(3, plan.cards_per_site))
    assert spec.resources.cards == 24 and spec.topology.max_sites == 3 and spec.topology.min_cards_per_site == 8
    assert spec.labels[fleet.DURATION_LABEL] == "0"


def _result(requests: int, errors: int, spans: list[int]) -> gangs.GangsResult:
    run = RunResult(requests, 40, 2.0, False, errors, "x" if errors else "", 1.0, 2.0, 1.5, 3.0)
    figures = {"p50_ms": 1.0, "p99_ms": 2.0, "mean_ms": 1.5, "max_ms": 3.0}
    return gangs.GangsResult(gangs.Plan(), run, spans, figures)


def test_only_gangs_that_succeeded_count_as_rounds() -> None:
    result = _result(200, 10, [3] * 190)
    assert result.rounds == 190 and result.per_s == 95.0
    assert not result.met  # errors miss the target


def test_a_gang_that_did_not_span_three_sites_misses_the_target() -> None:
    assert _result(200, 0, [3] * 200).met
    assert not _result(200, 0, [3] * 199 + [1]).met


def test_the_summary_names_only_reservations_per_second() -> None:
    assert _result(200, 0, [3] * 200).summary() == {"gangs.reservations_per_s": 100.0}
    assert _result(0, 0, []).summary() == {"gangs.reservations_per_s": None}
