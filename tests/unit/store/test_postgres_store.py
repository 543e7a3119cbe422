"""What only the PostgreSQL store has: schema migrations at open, a database newer than the code refused, two
gateways opening one empty database at once, an unreachable server named without its password, and a
server restarted under the store (the call during the outage fails UNAVAILABLE, the next one reconnects)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

from fedgate.common.reasons import ReasonCode
from gateway.errors import FailedPrecondition, StoreFull, Unavailable
from gateway.jobs.model import JobState
from gateway.store import Store, open_store
from gateway.store.postgres.schema import LATEST, MIGRATIONS
from tests.pgserver import PgServer
from tests.unit.store.test_store_contract import job, queued

pytestmark = pytest.mark.services


@pytest.fixture
def opened(pg_url: str) -> Iterator[list[Store]]:
    stores: list[Store] = []
    yield stores
    for store in stores:
        store.close()


def versions(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        return [(int(v), str(n)) for v, n in conn.execute("SELECT version, name FROM schema_version ORDER BY version")]


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1)) and len(MIGRATIONS) == LATEST


def test_an_empty_database_is_migrated_once_and_reopened_as_is(pg_url: str, opened: list[Store]) -> None:
    opened.append(open_store(pg_url))
    assert versions(pg_url) == [(m.version, m.name) for m in MIGRATIONS]
    opened[0].create_job(job(1), queued(job(1)))
    opened[0].close()
    opened.append(open_store(pg_url))
    assert versions(pg_url) == [(m.version, m.name) for m in MIGRATIONS]  # nothing applied twice
    assert opened[1].get_job("job-0001") == job(1)


def test_a_database_written_by_a_newer_fedgate_is_refused_and_left_unchanged(pg_url: str, opened: list[Store]) -> None:
    opened.append(open_store(pg_url))
    opened[0].create_job(job(1), queued(job(1)))
    with psycopg.connect(pg_url) as conn:
        conn.execute("INSERT INTO schema_version (version, name) VALUES (%s, 'from the future')", (LATEST + 1,))
    with pytest.raises(FailedPrecondition) as refused:
        open_store(pg_url)
    assert refused.value.reason == ReasonCode.STORE_SCHEMA_TOO_NEW
    assert (
        f"schema version {LATEST + 1}" in refused.value.message and "run the fedgate release" in refused.value.message
    )
    assert opened[0].get_job("job-0001") == job(1)
    assert versions(pg_url)[-1] == (LATEST + 1, "from the future")


def test_two_gateways_opening_one_empty_database_at_once_migrate_it_once(pg_url: str, opened: list[Store]) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)
    lock = threading.Lock()

    def open_one() -> None:
        barrier.wait()
        try:
            store = open_store(pg_url)
        except BaseException as exc:
            errors.append(exc)
            return
        with lock:
            opened.append(store)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(opened) == 4
    assert versions(pg_url) == [(m.version, m.name) for m in MIGRATIONS]


def test_an_unreachable_server_is_named_without_its_password(pg_server: PgServer) -> None:
    url = f"postgresql://fedgate:s3cret@127.0.0.1:{pg_server.port}/no_such_database"
    with pytest.raises(Unavailable) as refused:
        open_store(url)
    assert refused.value.reason == ReasonCode.STORE_UNREACHABLE
    assert f"postgresql://fedgate@127.0.0.1:{pg_server.port}/no_such_database" in refused.value.message
    assert "s3cret" not in refused.value.message


def test_a_restarted_server_fails_the_call_in_the_outage_and_serves_the_next(
    pg_server: PgServer, pg_url: str, opened: list[Store]
) -> None:
    store = open_store(pg_url)
    opened.append(store)
    store.create_job(job(1), queued(job(1)))
    pg_server.stop("immediate")  # like a crash: recovery replays the WAL at start
    try:
        with pytest.raises(Unavailable) as failed:
            store.create_job(job(2), queued(job(2)))
        assert failed.value.reason == ReasonCode.STORE_UNREACHABLE
    finally:
        pg_server.start()
    assert store.get_job("job-0001") == job(1)  # reconnected; what was committed survived the crash
    store.create_job(job(3), queued(job(3)))
    assert [j.state for j in store.active_jobs()] == [JobState.QUEUED, JobState.QUEUED]
    assert store.get_job("job-0002") is None  # the call that failed wrote nothing


def test_a_full_disk_on_the_server_is_store_full_and_the_store_goes_on(pg_url: str, opened: list[Store]) -> None:
    """SQLSTATE 53100 (disk_full) is the server's disk, not the network: RESOURCE_EXHAUSTED / STORE_FULL, like
    SQLite's full disk. The server's disk cannot be filled here without root over its mounts, so the error is
    raised inside a real transaction on a real connection, where psycopg would raise it."""
    store = open_store(pg_url)
    opened.append(store)
    with pytest.raises(StoreFull) as full, store._write():  # type: ignore[attr-defined]
        raise psycopg.errors.DiskFull("could not extend file: No space left on device")
    assert full.value.reason == ReasonCode.STORE_FULL and "out of disk space" in full.value.message
    one = job(1)
    store.create_job(one, queued(one))  # the connection is still good
    assert store.get_job(one.job_id) is not None
