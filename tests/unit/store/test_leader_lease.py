"""The leader lease on a real PostgreSQL, and the fence it gives every write: one holder at a time, a takeover
only after expiry or release, and a deposed leader that can change nothing, not even a write it started
before the takeover and commits after it (it waits for the takeover's lock, then is refused)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest

from fedgate.common.reasons import ReasonCode
from gateway.errors import NotLeader
from gateway.store import STANDBY, LeaderLease, Store, open_leader_lease, open_store
from tests.unit.store.test_store_contract import job, queued
from tests.waiting import eventually

pytestmark = pytest.mark.services

LONG = timedelta(seconds=30)
SHORT = timedelta(milliseconds=300)


@pytest.fixture
def leases(pg_url: str) -> Iterator[list[LeaderLease]]:
    open_store(pg_url).close()  # migrates the schema
    made: list[LeaderLease] = []
    yield made
    for lease in made:
        lease.close()


@pytest.fixture
def stores() -> Iterator[list[Store]]:
    made: list[Store] = []
    yield made
    for store in made:
        store.close()


def lease(url: str, leases: list[LeaderLease]) -> LeaderLease:
    opened = open_leader_lease(url)
    assert opened is not None
    leases.append(opened)
    return opened


def test_sqlite_has_no_lease_its_file_lock_is_the_leadership(tmp_path: object) -> None:
    assert open_leader_lease("sqlite:///x.db") is None


def test_one_holder_at_a_time_and_each_takeover_bumps_the_epoch(pg_url: str, leases: list[LeaderLease]) -> None:
    a, b = lease(pg_url, leases), lease(pg_url, leases)
    won = a.acquire("a", "127.0.0.1:1", LONG)
    assert (won.holder, won.address, won.live) == ("a", "127.0.0.1:1", True)
    assert won.epoch >= 1
    refused = b.acquire("b", "127.0.0.1:2", LONG)
    assert (refused.holder, refused.epoch) == ("a", won.epoch)  # b learns who leads and where
    assert a.renew(won.epoch, "a", LONG) and not b.renew(won.epoch, "b", LONG)
    a.release(won.epoch, "a")
    assert not a.current().live
    taken = b.acquire("b", "127.0.0.1:2", LONG)
    assert (taken.holder, taken.epoch) == ("b", won.epoch + 1)
    assert not a.renew(won.epoch, "a", LONG)  # deposed: its renewal is refused
    a.release(won.epoch, "a")  # a stale release changes nothing
    assert b.current().live and b.current().holder == "b"


def test_an_expired_lease_is_taken_over_by_the_database_clock(pg_url: str, leases: list[LeaderLease]) -> None:
    a, b = lease(pg_url, leases), lease(pg_url, leases)
    first = a.acquire("a", "x:1", SHORT)
    eventually(lambda: not b.current().live, timeout=5, what="the short lease to expire")
    second = b.acquire("b", "x:2", LONG)
    assert (second.holder, second.epoch) == ("b", first.epoch + 1)


def test_a_deposed_leader_can_write_nothing(pg_url: str, leases: list[LeaderLease], stores: list[Store]) -> None:
    a, b = lease(pg_url, leases), lease(pg_url, leases)
    term = a.acquire("a", "127.0.0.1:1", LONG)
    leader = open_store(pg_url, fence=term.epoch)
    stores.append(leader)
    kept = job(1)
    leader.create_job(kept, queued(kept))  # the leader writes while it holds the epoch
    a.release(term.epoch, "a")
    b.acquire("b", "127.0.0.1:2", LONG)
    lost = job(2)
    with pytest.raises(NotLeader) as refused:
        leader.create_job(lost, queued(lost))
    assert refused.value.reason == ReasonCode.NOT_LEADER
    assert refused.value.metadata == {"leader": "127.0.0.1:2"}
    with pytest.raises(NotLeader):
        leader.advance_site_cursor("centre-a", 5)
    with pytest.raises(NotLeader):
        leader.reserve_site_messages("centre-a", 10)
    assert leader.get_job("job-0002") is None and leader.get_job("job-0001") is not None  # reads still work
    assert leader.site_cursor("centre-a") == 0


def test_a_standby_store_writes_nothing_and_an_unfenced_one_is_for_offline_tools(
    pg_url: str, leases: list[LeaderLease], stores: list[Store]
) -> None:
    standby = open_store(pg_url, fence=STANDBY)
    stores.append(standby)
    one = job(3)
    with pytest.raises(NotLeader):
        standby.create_job(one, queued(one))
    tool = open_store(pg_url)
    stores.append(tool)
    tool.create_job(one, queued(one))  # no fence: what the store contract tests and offline tools open
    assert standby.get_job("job-0003") is not None


def test_a_write_in_flight_during_a_takeover_commits_first_or_is_refused(
    pg_url: str, leases: list[LeaderLease], stores: list[Store]
) -> None:
    """The takeover locks the lease row FOR UPDATE; a leader's write holds it FOR KEY SHARE until it commits.
    A write that began before the takeover therefore commits before the epoch moves, and the takeover waits."""
    a, b = lease(pg_url, leases), lease(pg_url, leases)
    term = a.acquire("a", "127.0.0.1:1", SHORT)
    with psycopg.connect(pg_url, autocommit=True) as conn, conn.transaction():
        # A leader's write transaction, paused after its fence check (the key-share lock is held).
        row = conn.execute("SELECT epoch FROM gateway_leader WHERE id = 1 FOR KEY SHARE").fetchone()
        assert row is not None and int(row[0]) == term.epoch
        eventually(lambda: not b.current().live, timeout=5, what="the lease to expire")
        result: list[object] = []
        taker = threading.Thread(target=lambda: result.append(b.acquire("b", "127.0.0.1:2", LONG)))
        started = time.monotonic()
        taker.start()
        taker.join(0.5)
        assert taker.is_alive(), "the takeover must wait for the write in flight"
        conn.execute("INSERT INTO site_cursors (site, sequence) VALUES ('in-flight', 1)")
    taker.join(5)
    assert not taker.is_alive() and time.monotonic() - started >= 0.5
    assert isinstance(result[0], object) and b.current().holder == "b" and b.current().epoch == term.epoch + 1
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT sequence FROM site_cursors WHERE site = 'in-flight'").fetchone() == (1,)
