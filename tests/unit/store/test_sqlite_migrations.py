"""The SQLite store's numbered migrations: a store at an older version is brought to the latest at open with
its data kept, a store written before migrations were numbered opens unchanged, a newer one is refused, a
migration that fails leaves the file as it was, and both engines' migrations describe the same tables."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gateway.errors import StoreRefused
from gateway.store import open_store
from gateway.store.codec import job_to_json
from gateway.store.postgres import schema as postgres_schema
from gateway.store.sqlite import SCRIPTS
from gateway.store.sqlite_open import APPLICATION_ID, open_database
from gateway.store.sqlite_schema import LATEST, MIGRATIONS
from tests.unit.test_sqlite_store_safety import job

BEFORE_MIGRATIONS = Path(__file__).with_name("sqlite_store_before_migrations.sql")
SQLITE_ONLY = frozenset({"sqlite_sequence"})
POSTGRES_ONLY = frozenset({"schema_version"})
ROWID_FOR_IDENTITY = {"revocations": {"id"}}
"""PostgreSQL's identity column that SQLite's implicit rowid stands for (same order of insertion)."""


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def contents(path: Path) -> tuple[list[str], list[str]]:
    """The schema (every CREATE) and every row of the file, each as SQL text, sorted."""
    db = sqlite3.connect(path)
    try:
        lines = list(db.iterdump())
    finally:
        db.close()
    return sorted(line for line in lines if line.startswith("CREATE")), sorted(
        line for line in lines if line.startswith("INSERT")
    )


def sqlite_tables(path: Path) -> dict[str, set[str]]:
    db = sqlite3.connect(path)
    try:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {n: {r[1] for r in db.execute(f"PRAGMA table_info({n})")} for n in names if n not in SQLITE_ONLY}
    finally:
        db.close()


def at_version_1(path: Path) -> None:
    """A file as a fedgate whose schema was migration 1 alone would have written it, with one job in it."""
    stored, event = job(1)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.executescript(
            f"BEGIN;\n{MIGRATIONS[0].sql}\nPRAGMA application_id = {APPLICATION_ID};\nPRAGMA user_version = 1;\nCOMMIT;"
        )
        db.execute(
            "INSERT INTO jobs (job_id, tenant, project, state, request_id, body) VALUES (?, ?, ?, ?, ?, ?)",
            (
                stored.job_id,
                stored.spec.tenant,
                stored.spec.project,
                stored.state.value,
                stored.request_id,
                job_to_json(stored),
            ),
        )
        db.execute(
            "INSERT INTO events (job_id, state, time, attempt, site, message) VALUES (?, ?, ?, 0, '', '')",
            (event.job_id, event.state.value, event.time.isoformat()),
        )
    finally:
        db.close()


@pytest.fixture
def before_migrations(tmp_path: Path) -> Iterator[Path]:
    """A store written by the code before SQLite's migrations were numbered, rebuilt from its dump."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.executescript(BEFORE_MIGRATIONS.read_text())
    finally:
        db.close()
    assert user_version(path) == 1
    yield path


def test_migrations_are_numbered_from_one_without_gaps_and_the_store_runs_them_all() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1)) and len(MIGRATIONS) == LATEST
    assert tuple(m.sql for m in MIGRATIONS) == SCRIPTS


def test_a_store_at_version_1_is_migrated_to_the_latest_at_open_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    at_version_1(path)
    assert "site_messages" not in sqlite_tables(path)
    store = open_store(f"sqlite:///{path}")
    try:
        stored = store.get_job("job-00001")
        assert stored is not None and stored.request_id == "r-1"
        assert [e.state for e in store.events("job-00001")] == [stored.state]
        assert store.reserve_site_messages("centre-a", 10) == 1  # the table of migration 2 is there and works
    finally:
        store.close()
    assert user_version(path) == LATEST
    again = open_store(f"sqlite:///{path}")  # at the latest: opened as it is
    again.close()
    assert user_version(path) == LATEST


def test_a_store_written_before_numbered_migrations_opens_with_its_tables_and_rows_unchanged(
    before_migrations: Path,
) -> None:
    schema, rows = contents(before_migrations)
    store = open_store(f"sqlite:///{before_migrations}")
    try:
        assert [j.job_id for j in store.active_jobs()] == ["job-00001", "job-00002"]
        assert store.site_cursor("centre-a") == 7
    finally:
        store.close()
    # No table, index or row it had changed; only the migrations from 3 on (plain ones) added theirs.
    after_schema, after_rows = contents(before_migrations)
    added = [line for line in after_schema if line not in schema]
    assert set(schema) <= set(after_schema) and set(rows) <= set(after_rows)
    assert [line.split("(")[0] for line in added] == ["CREATE TABLE gateway_leader "]
    assert [line for line in after_rows if line not in rows] == [
        "INSERT INTO \"gateway_leader\" VALUES(1,0,'','','1970-01-01T00:00:00Z');"
    ]
    assert user_version(before_migrations) == LATEST


def test_a_store_from_a_newer_fedgate_is_refused_and_left_as_it_was(before_migrations: Path) -> None:
    db = sqlite3.connect(before_migrations)
    db.execute(f"PRAGMA user_version = {LATEST + 1}")
    db.close()
    data = before_migrations.read_bytes()
    with pytest.raises(StoreRefused) as refused:
        open_store(f"sqlite:///{before_migrations}")
    assert refused.value.reason == "STORE_TOO_NEW"
    assert f"schema version {LATEST + 1}, written by a newer fedgate" in refused.value.message
    assert before_migrations.read_bytes() == data


def test_a_migration_that_fails_leaves_the_store_at_its_version_with_none_of_them(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    at_version_1(path)
    schema, rows = contents(path)
    broken = [*SCRIPTS, "CREATE TABLE half_done (a INTEGER);\nINSERT INTO nowhere VALUES (1);"]
    with pytest.raises(StoreRefused):
        open_database(str(path), broken)
    assert user_version(path) == 1
    assert contents(path) == (schema, rows)  # neither migration 2 nor the broken one's first table


@pytest.mark.services
def test_the_sqlite_and_postgresql_migrations_describe_the_same_tables_and_columns(tmp_path: Path, pg_url: str) -> None:
    assert [(m.version, m.name) for m in MIGRATIONS] == [(m.version, m.name) for m in postgres_schema.MIGRATIONS]
    open_store(f"sqlite:///{tmp_path / 'gw.db'}").close()
    open_store(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        found = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        ).fetchall()
    postgres: dict[str, set[str]] = {}
    for table, column in found:
        if str(table) not in POSTGRES_ONLY:
            postgres.setdefault(str(table), set()).add(str(column))
    sqlite = sqlite_tables(tmp_path / "gw.db")
    for table, columns in ROWID_FOR_IDENTITY.items():
        sqlite[table] |= columns
    assert sqlite == postgres
