"""The benchmark's results file: a run that skips a benchmark keeps that benchmark's last figures."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import carry_over


def test_a_skipped_benchmark_keeps_its_last_figures_and_says_from_when(tmp_path: Path) -> None:
    results = tmp_path / "latest.json"
    results.write_text(
        json.dumps(
            {"machine": {"date": "2026-11-28T10:00:00+00:00"}, "runs": [{"rps": 925}], "plan": {"jobs": 3000}}
            | {"cycle": {"median_seconds": 2.05}}
        )
    )
    fresh = {"machine": {"date": "2026-11-28T17:00:00+00:00"}, "runs": [], "plan": {"jobs": 300}}
    document = carry_over(results, fresh | {"cycle": {"median_seconds": 0.9}}, ["admission"])
    assert document["runs"] == [{"rps": 925}] and document["plan"] == {"jobs": 3000}
    assert document["cycle"] == {"median_seconds": 0.9}  # measured now: not carried
    assert document["carried_over"] == {"admission": "2026-11-28T10:00:00+00:00"}


def test_without_an_earlier_file_nothing_is_carried(tmp_path: Path) -> None:
    document = carry_over(tmp_path / "missing.json", {"runs": []}, ["admission"])
    assert document == {"runs": []}
