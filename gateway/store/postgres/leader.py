"""The leader lease of the gateways that share one PostgreSQL database.

Owns: the SQL of the `gateway_leader` row (one row: the epoch, who holds it, the address clients should use,
and until when), on a connection of its own, so that a slow store write never delays a renewal. Times are the
database server's (`clock_timestamp()`), so the gateways' own clocks may disagree without harm. Taking the lease
bumps the epoch under a row lock (`FOR UPDATE`), which waits for the writes in flight of the previous leader
(they hold the row `FOR KEY SHARE`, see `connection.py`): the epoch is the fence every write carries.
It decides nothing about when to campaign or renew: that is `gateway.app.leadership`.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg

from gateway.errors import GatewayError
from gateway.store.base import LeaderRecord
from gateway.store.postgres.connection import PgConnection

# One statement each; the lease connection never waits long on a lock (a takeover waits at most this long for
# the old leader's writes in flight, then tries again at the next look).
_TIMEOUTS = "SET lock_timeout = '2s'; SET statement_timeout = '3s'"

_SELECT = (
    "SELECT epoch, holder, address, expire_time > clock_timestamp(), "
    "GREATEST(EXTRACT(EPOCH FROM expire_time - clock_timestamp()), 0) FROM gateway_leader WHERE id = 1"
)


class PgLeaderLease(PgConnection):
    """`LeaderLease` on PostgreSQL. Open it after the store (which migrates the schema)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        with self._read() as conn:
            for statement in _TIMEOUTS.split("; "):
                conn.execute(statement)

    def current(self) -> LeaderRecord:
        with self._read() as conn:
            row = conn.execute(_SELECT).fetchone()
        return _record(row)

    def acquire(self, holder: str, address: str, lease: timedelta) -> LeaderRecord:
        """Take the lease if nobody holds it (free, expired or released): the epoch goes up by one. Returns the
        row as it is afterwards; the caller won when `holder` is its own."""
        with self._read() as conn, conn.transaction():
            row = conn.execute(_SELECT + " FOR UPDATE").fetchone()
            record = _record(row)
            if record.live and record.holder != holder:
                return record
            row = conn.execute(
                "UPDATE gateway_leader SET epoch = epoch + 1, holder = %s, address = %s, "
                "expire_time = clock_timestamp() + %s WHERE id = 1 "
                "RETURNING epoch, holder, address, true, EXTRACT(EPOCH FROM expire_time - clock_timestamp())",
                (holder, address, lease),
            ).fetchone()
        return _record(row)

    def renew(self, epoch: int, holder: str, lease: timedelta) -> bool:
        """Extend our lease; False when the epoch is no longer ours (taken over: we are deposed)."""
        with self._read() as conn:
            cursor = conn.execute(
                "UPDATE gateway_leader SET expire_time = clock_timestamp() + %s "
                "WHERE id = 1 AND epoch = %s AND holder = %s",
                (lease, epoch, holder),
            )
        return cursor.rowcount == 1

    def release(self, epoch: int, holder: str) -> None:
        """End our lease now, so that a standby takes over at its next look instead of after the lease."""
        try:
            with self._read() as conn:
                conn.execute(
                    "UPDATE gateway_leader SET expire_time = '1970-01-01T00:00:00Z' "
                    "WHERE id = 1 AND epoch = %s AND holder = %s",
                    (epoch, holder),
                )
        except (psycopg.Error, GatewayError):
            pass  # the lease then ends by itself


def _record(row: tuple[object, ...] | None) -> LeaderRecord:
    if row is None:  # the migration inserts the row; a missing one means a hand-edited database
        return LeaderRecord(0, "", "", False, 0.0)
    epoch, holder, address, live, remaining = row
    return LeaderRecord(int(str(epoch)), str(holder), str(address), bool(live), float(str(remaining)))
