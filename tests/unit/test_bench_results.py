"""The benchmarks' results file: a run that skips a benchmark keeps that benchmark's last figures and says
from when; the summary always has its 13 keys and never a figure nobody measured."""

from __future__ import annotations

import json
from pathlib import Path

from bench.registry import SUMMARY_KEYS
from bench.report import carry_over, full_summary, missing_keys


def test_a_skipped_benchmark_keeps_its_last_figures_and_says_from_when(tmp_path: Path) -> None:
    results = tmp_path / "latest.json"
    results.write_text(
        json.dumps(
            {
                "machine": {"date": "2026-11-28T10:00:00+00:00"},
                "admission": {"runs": [{"rps": 925}]},
                "cycle": {"median_seconds": 2.05},
                "summary": {"admission.jobs_per_s": 925.0, "admission.vs_echo": 0.41, "cycle.median_s": 2.05},
            }
        )
    )
    fresh = {"machine": {"date": "2026-11-28T17:00:00+00:00"}, "cycle": {"median_seconds": 0.9}}
    fresh["summary"] = full_summary({"cycle.median_s": 0.9})
    document = carry_over(results, fresh, ["admission"])
    assert document["admission"] == {"runs": [{"rps": 925}]}
    assert document["summary"]["admission.jobs_per_s"] == 925.0 and document["summary"]["admission.vs_echo"] == 0.41
    assert document["summary"]["admission.p99_ms_half_load"] is None  # the earlier run had no figure: none now
    assert document["cycle"] == {"median_seconds": 0.9} and document["summary"]["cycle.median_s"] == 0.9  # not carried
    assert document["carried_over"] == {"admission": "2026-11-28T10:00:00+00:00"}


def test_a_benchmark_carried_twice_keeps_the_date_it_was_measured(tmp_path: Path) -> None:
    results = tmp_path / "latest.json"
    results.write_text(
        json.dumps(
            {
                "machine": {"date": "2026-12-01T00:00:00+00:00"},
                "ingest": {"reports": 10},
                "summary": {"ingest.reports_per_s": 2345.0},
                "carried_over": {"ingest": "2026-11-20T00:00:00+00:00"},
            }
        )
    )
    document = carry_over(results, {"summary": full_summary({})}, ["ingest"])
    assert document["summary"]["ingest.reports_per_s"] == 2345.0
    assert document["carried_over"] == {"ingest": "2026-11-20T00:00:00+00:00"}


def test_admission_results_of_the_layout_before_the_registry_are_carried_under_its_name(tmp_path: Path) -> None:
    results = tmp_path / "latest.json"
    previous = {"machine": {"date": "d"}, "runs": [{"rps": 925}], "plan": {"jobs": 3000}, "targets": {"x": 1}}
    results.write_text(json.dumps(previous))
    document = carry_over(results, {"summary": full_summary({})}, ["admission"])
    assert document["admission"] == {"runs": [{"rps": 925}], "plan": {"jobs": 3000}, "targets": {"x": 1}}
    assert document["summary"]["admission.jobs_per_s"] is None  # that layout had no summary: nothing invented


def test_without_an_earlier_file_nothing_is_carried(tmp_path: Path) -> None:
    document = carry_over(tmp_path / "missing.json", {"runs": []}, ["admission"])
    assert document == {"runs": []}


def test_the_summary_has_exactly_the_thirteen_keys_whatever_was_measured() -> None:
    summary = full_summary({"ingest.reports_per_s": 2345.0, "not.a.key": 1.0})
    assert list(summary) == list(SUMMARY_KEYS) and len(summary) == 13
    assert summary["ingest.reports_per_s"] == 2345.0
    assert missing_keys(summary) == [k for k in SUMMARY_KEYS if k != "ingest.reports_per_s"]
