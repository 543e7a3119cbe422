"""`python -m bench NAME ...`: benchmarks chosen by name, run through the registry's interface, their summary
keys written beside the carried-over ones; a benchmark whose module is not in the tree is reported, never
invented. Fake benchmark modules stand in for real ones: no benchmark runs here. Also the open-loop load
generator, on a fake clock: it issues calls at the asked rate whatever the server does."""

from __future__ import annotations

import asyncio
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import main, select
from bench.load import open_loop
from bench.registry import BENCHMARKS, SUMMARY_KEYS, BenchmarkAbsent


class _Result:
    def __init__(self, figures: dict[str, float | None], correct: bool = True) -> None:
        self.figures = figures
        self.correct = correct

    def to_json(self) -> dict[str, Any]:
        return {"figures": self.figures}

    def summary(self) -> dict[str, float | None]:
        return dict(self.figures)

    def render(self) -> str:
        return "fake | figure | baseline | target: met"


def _fake_module(
    monkeypatch: pytest.MonkeyPatch, name: str, figures: dict[str, float | None], correct: bool = True
) -> list[Path]:
    """`bench.<name>` as a module whose run() records its workdir and returns `figures`."""
    workdirs: list[Path] = []

    def run(workdir: Path, progress: Any) -> _Result:
        workdirs.append(workdir)
        progress(f"{name} ran")
        return _Result(figures, correct)

    run.__module__ = f"bench.{name}"  # defined there, as far as the registry can tell
    module = types.ModuleType(f"bench.{name}")
    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, f"bench.{name}", module)
    return workdirs


def _absent(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setitem(sys.modules, f"bench.{name}", None)  # importing it now fails as a missing module does


def test_a_named_benchmark_runs_alone_and_the_summary_keeps_all_thirteen_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ran = _fake_module(monkeypatch, "ingest", {"ingest.reports_per_s": 2345.0})
    output = tmp_path / "latest.json"
    assert main(["ingest", "--output", str(output)]) == 0
    document = json.loads(output.read_text())
    assert len(ran) == 1 and document["ran"] == ["ingest"]
    assert list(document["summary"]) == list(SUMMARY_KEYS)
    assert document["summary"]["ingest.reports_per_s"] == 2345.0
    assert document["ingest"] == {"figures": {"ingest.reports_per_s": 2345.0}}
    assert "ingest.reports_per_s" not in document["summary_missing"] and len(document["summary_missing"]) == 12


def test_a_benchmark_absent_from_the_tree_is_reported_and_its_keys_stay_null(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_module(monkeypatch, "ingest", {"ingest.reports_per_s": 2345.0})
    _absent(monkeypatch, "memory")
    output = tmp_path / "latest.json"
    assert main(["ingest", "--only", "memory", "--output", str(output)]) == 0
    document = json.loads(output.read_text())
    assert document["absent"] == {"memory": "bench/memory.py is not in this tree"}
    assert document["summary"]["memory.gateway_rss_mb"] is None and "memory" not in document
    printed = capsys.readouterr().out
    assert "memory.gateway_rss_mb" in printed and "MISSING: bench/memory.py is not in this tree" in printed


def test_an_absent_module_is_told_apart_from_one_that_fails_to_import(monkeypatch: pytest.MonkeyPatch) -> None:
    _absent(monkeypatch, "gangs")
    with pytest.raises(BenchmarkAbsent, match="not in this tree"):
        BENCHMARKS["gangs"].load()
    broken = types.ModuleType("bench.dispatch")  # here, but written before the interface and with no adapter
    monkeypatch.setitem(sys.modules, "bench.dispatch", broken)
    with pytest.raises(BenchmarkAbsent, match="has no run"):
        BENCHMARKS["dispatch"].load()


def test_a_module_without_its_own_run_goes_through_the_registry_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("bench.simulation")
    module.run = json.dumps  # type: ignore[attr-defined]  # a `run` it imported, as bench.simulation does
    monkeypatch.setitem(sys.modules, "bench.simulation", module)
    assert BENCHMARKS["simulation"].load().__module__ == "bench.registry"  # the adapter, not json.dumps


def test_benchmarks_not_run_keep_their_summary_keys_from_the_previous_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    output = tmp_path / "latest.json"
    earlier = {k: 1.5 for k in SUMMARY_KEYS} | {"cycle.incremental_ms": None}
    output.write_text(
        json.dumps(
            {
                "machine": {"date": "2026-12-01T09:00:00+00:00"},
                "summary": earlier,
                "cycle": {"median_seconds": 1.5},
                "gangs": {"old": True},
            }
        )
    )
    _fake_module(monkeypatch, "gangs", {"gangs.reservations_per_s": 99.0, "ingest.reports_per_s": 7.0})
    assert main(["gangs", "--output", str(output)]) == 0
    document = json.loads(output.read_text())
    summary = document["summary"]
    assert summary["gangs.reservations_per_s"] == 99.0 and document["gangs"]["figures"]["ingest.reports_per_s"] == 7.0
    assert summary["ingest.reports_per_s"] == 1.5  # a key gangs does not own is ignored, ingest's carried over
    assert summary["cycle.median_s"] == 1.5 and document["cycle"] == {"median_seconds": 1.5}
    assert summary["cycle.incremental_ms"] is None and document["summary_missing"] == ["cycle.incremental_ms"]
    assert document["carried_over"]["cycle"] == "2026-12-01T09:00:00+00:00" and "gangs" not in document["carried_over"]


def test_a_failed_run_makes_the_exit_code_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_module(monkeypatch, "ingest", {"ingest.reports_per_s": 1.0}, correct=False)
    assert main(["ingest", "--output", str(tmp_path / "latest.json")]) == 1


def test_benchmarks_are_chosen_by_name_in_registry_order_and_unknown_names_list_the_valid_ones() -> None:
    assert select(["gangs", "admission"], [], []) == ["admission", "gangs"]
    assert select([], ["slurm"], []) == ["slurm"]
    assert select([], [], ["simulation", "takeover"]) == [n for n in BENCHMARKS if n not in ("simulation", "takeover")]
    with pytest.raises(ValueError, match="unknown benchmark ingestion; the benchmarks are: admission, "):
        select(["ingestion"], [], [])


def test_every_summary_key_has_exactly_one_owner() -> None:
    owners = [k for b in BENCHMARKS.values() for k in b.owns]
    assert sorted(owners) == sorted(SUMMARY_KEYS) and len(set(owners)) == len(owners) == 13


def test_open_loop_issues_calls_at_the_asked_rate_while_none_has_returned() -> None:
    now = [0.0]
    issued: list[float] = []
    release = asyncio.Event()

    async def call(request: int) -> None:
        issued.append(now[0])
        if len(issued) == 250:
            release.set()
        await release.wait()  # the server answers nothing until every call is out: open loop must not wait

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(0)  # the calls due so far start before the clock moves on
        now[0] += seconds

    async def scenario() -> Any:
        return await open_loop(call, list(range(250)), 50.0, clock=lambda: now[0], sleep=sleep)

    result = asyncio.run(scenario())
    per_second = [sum(1 for t in issued if second <= t + 1e-9 < second + 1) for second in range(5)]
    assert per_second == [50, 50, 50, 50, 50]
    assert result.requests == 250 and result.errors == 0


def test_a_benchmark_that_raises_is_failed_its_keys_null_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    output = tmp_path / "latest.json"
    output.write_text(json.dumps({"machine": {"date": "d"}, "summary": {"ingest.reports_per_s": 5.0}}))

    def run(workdir: Path, progress: Any) -> _Result:
        raise OSError("no such socket")

    run.__module__ = "bench.ingest"
    broken = types.ModuleType("bench.ingest")
    broken.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bench.ingest", broken)
    _fake_module(monkeypatch, "gangs", {"gangs.reservations_per_s": 3.0})
    assert main(["ingest", "gangs", "--output", str(output)]) == 1
    document = json.loads(output.read_text())
    assert document["failed"] == {"ingest": "OSError: no such socket"} and document["ran"] == ["gangs"]
    assert document["summary"]["ingest.reports_per_s"] is None  # not the earlier 5.0: the failure is the news
    assert document["summary"]["gangs.reservations_per_s"] == 3.0
