"""The memory benchmark's pieces that can be wrong without timing: reading /proc status, the store it
populates, the summary's keys. No benchmark runs here."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from bench import memory

STATUS = """Name:\tpython
VmPeak:\t  900000 kB
VmHWM:\t  204800 kB
VmRSS:\t  102400 kB
Threads:\t4
"""


def test_rss_and_peak_are_read_in_mib() -> None:
    assert memory.read_memory(STATUS) == memory.Memory(rss_mb=100.0, peak_mb=200.0)


def test_this_process_can_be_read() -> None:
    import os

    reading = memory.process_memory(os.getpid())
    assert 0 < reading.rss_mb <= reading.peak_mb


def test_the_store_gets_the_planned_mix_of_ended_and_queued_jobs(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    memory.populate(db, memory.Plan(sites=3, jobs=200, queued_share=0.1), ["a", "b", "c"])
    with contextlib.closing(sqlite3.connect(db)) as conn:
        counts = dict(conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
    assert sum(counts.values()) == 200
    assert counts["QUEUED"] == 20
    assert set(counts) <= {"QUEUED", "SUCCEEDED", "FAILED", "CANCELLED"}


def test_the_summary_names_only_the_gateway_rss() -> None:
    result = memory.MemoryResult(memory.Plan(), memory.Memory(60.0, 61.0), memory.Memory(420.0, 450.0), 1000, {})
    assert result.summary() == {"memory.gateway_rss_mb": 420.0}
    assert result.met
    assert not memory.MemoryResult(memory.Plan(), memory.Memory(60, 61), memory.Memory(420, 450), 999, {}).met
    assert "< 500 MB: met" in result.render()
    assert result.to_json()["loaded"] == {"rss_mb": 420.0, "peak_mb": 450.0}
