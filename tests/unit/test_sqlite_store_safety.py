"""The SQLite store's boundary: disk errors leave it as `StoreError`s, one writer per file, readers beside it.

A full database is made with `PRAGMA max_page_count`, which gives SQLITE_FULL exactly as a full disk does; a
read-only one with a connection SQLite itself opened read-only. The real-process versions (a tmpfs that fills up,
a read-only mount, two gateway processes) are in tests/e2e/test_store_safety.py.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.errors import StoreFull, StoreRefused, StoreUnavailable
from gateway.jobs.model import Job, JobEvent, JobSpec, JobState, Resources, StackRun
from gateway.store import open_store
from gateway.store.sqlite import SCRIPTS, SqliteStore

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def job(i: int, padding: int = 0) -> tuple[Job, JobEvent]:
    command = ("python3", "-c", "pass", "#" + "x" * padding)
    spec = JobSpec("deepsea-ai", "llama-sft", Resources("ascend-910b", None, 1), (StackRun("cann", "", command),))
    job_id = f"job-{i:05d}"
    return Job(job_id, spec, JobState.QUEUED, NOW, NOW, request_id=f"r-{i}"), JobEvent(job_id, JobState.QUEUED, NOW)


def test_a_full_database_refuses_writes_as_store_full_keeps_what_was_committed_and_recovers(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'gw.db'}")
    assert isinstance(store, SqliteStore)
    try:
        store.create_jobs([job(i) for i in range(10)])
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full from here on
        with pytest.raises(StoreFull) as full:
            store.create_jobs([job(100 + i, padding=5000) for i in range(50)])
        assert full.value.reason == "STORE_FULL"
        assert isinstance(full.value.__cause__, sqlite3.Error)  # the ROLLBACK's own error did not mask it
        assert len(store.active_jobs()) == 10  # reads go on, the batch left nothing behind
        store._db.execute(f"PRAGMA max_page_count = {pages * 1000}")  # space is back
        created = store.create_jobs([job(200 + i, padding=5000) for i in range(50)])
        assert all(new for _, new in created)
        assert len(store.active_jobs()) == 60
    finally:
        store.close()


def test_a_database_gone_read_only_raises_store_unavailable_not_a_sqlite_error(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    store = open_store(f"sqlite:///{path}")
    assert isinstance(store, SqliteStore)
    try:
        store.create_jobs([job(1)])
        writable = store._db
        store._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        try:
            with pytest.raises(StoreUnavailable) as refused:
                store.save_transition(*job(1), site_cursor=None)
            assert refused.value.reason == "STORE_UNAVAILABLE"
            assert store.get_job("job-00001") is not None
        finally:
            store._db.close()
            store._db = writable
    finally:
        store.close()


def test_a_bug_in_sql_stays_a_bug(tmp_path: Path) -> None:
    """Only the disk's errors are translated: a broken constraint must still surface as what it is (INTERNAL)."""
    store = open_store(f"sqlite:///{tmp_path / 'gw.db'}")
    assert isinstance(store, SqliteStore)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            store.create_jobs([job(1), (dataclasses.replace(job(1)[0], request_id=""), job(1)[1])])
    finally:
        store.close()


HOLD = """
import sys
from gateway.store import open_store
store = open_store(sys.argv[1])
print("holding", flush=True)
sys.stdin.read()
store.close()
"""


def test_one_writer_per_file_across_processes_and_readers_beside_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gw.db'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with pytest.raises(StoreRefused) as refused:
            open_store(url)
        assert refused.value.reason == "STORE_IN_USE"
        assert f"pid {holder.pid}" in refused.value.message and str(tmp_path / "gw.db") in refused.value.message
        reader = open_store(url, read_only=True)
        try:
            assert reader.active_jobs() == ()
        finally:
            reader.close()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    open_store(url).close()  # the holder is gone: the file is free


def test_a_reader_never_creates_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreRefused) as refused:
        open_store(f"sqlite:///{tmp_path / 'nothing.db'}", read_only=True)
    assert refused.value.reason == "STORE_MISSING"
    assert not (tmp_path / "nothing.db").exists()


def test_a_store_from_before_the_mark_is_adopted(tmp_path: Path) -> None:
    """A database an older fedgate wrote (its tables, no application id) is marked and used, not refused."""
    path = tmp_path / "gw.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("PRAGMA journal_mode=WAL")
    old.executescript("\n".join(SCRIPTS[:2]))  # the tables of version 2 (what it had), without the mark
    old.close()
    store = open_store(f"sqlite:///{path}")
    store.create_jobs([job(1)])
    store.close()
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA application_id").fetchone()[0] == 0x66656467
    finally:
        check.close()
