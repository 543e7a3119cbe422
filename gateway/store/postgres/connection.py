"""One PostgreSQL connection shared by the store's threads, with its lock, reconnection and error mapping.

Owns: opening the connection (autocommit, so each statement outside a transaction commits on its own, and
`synchronous_commit` never `off`, so a commit is durable before it returns), reconnecting on the next call
after the server went away, serialising callers (the event loop and the group committer's thread) with one
lock, turning a lost or refused connection into `Unavailable` that names the server but never the
password, and a full disk (SQLSTATE 53100) into `StoreFull`; and the fence: once `fence(epoch)` is set, every
write transaction first reads the leader lease's epoch under a key-share lock and refuses itself (`NotLeader`)
when the epoch is not ours. The lock makes a takeover (which locks the row for update) wait for our writes in
flight, so each write of a deposed leader either commits before the takeover or is refused after it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict

from fedgate.common.reasons import ReasonCode
from gateway.errors import GatewayError, NotLeader, StoreFull, Unavailable
from gateway.store.base import STANDBY

CONNECT_TIMEOUT_S = 10


def describe(url: str) -> str:
    """`user@host:port/dbname` of a connection URL: what messages may show (never the password)."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = parts.get("host") or "localhost"
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname', '')}"


class PgConnection:
    """The connection every table mixin of `PostgresStore` goes through: `_read()` and `_write()`."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.where = describe(url)
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._fence: int | None = None
        with self._lock:
            self._connection()

    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
        """The open connection, (re)connecting when there is none or the last one broke. Under the lock."""
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        try:
            conn = psycopg.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.OperationalError as exc:
            raise Unavailable(
                f"cannot connect to the PostgreSQL store {self.where}: {_first_line(exc)}",
                reason=ReasonCode.STORE_UNREACHABLE,
            ) from exc
        # A commit must be durable before the store answers: whatever the server's default, never `off`.
        row = conn.execute("SHOW synchronous_commit").fetchone()
        if row is not None and row[0] == "off":
            conn.execute("SET synchronous_commit TO on")
        self._conn = conn
        return conn

    def fence(self, epoch: int | None) -> None:
        """From now on, refuse every write unless the leader lease's epoch is `epoch` (STANDBY: refuse all;
        None: no fence, for a store opened outside an election: the offline tools and the tests)."""
        self._fence = epoch

    def _check_fence(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        if self._fence is None:
            return
        row = conn.execute("SELECT epoch, address FROM gateway_leader WHERE id = 1 FOR KEY SHARE").fetchone()
        if row is None or int(str(row[0])) != self._fence:
            leader = str(row[1]) if row else ""
            raise NotLeader(
                "this gateway is not the leader"
                + (f" (epoch {self._fence} was taken over)" if self._fence != STANDBY else " (it is a standby)")
                + (f"; the leader is at {leader}" if leader else "")
                + ": retry there, or give the client every gateway address",
                metadata={"leader": leader} if leader else None,
            )

    @contextmanager
    def _read(self) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        """The connection for statements that commit on their own (reads, single-statement writes)."""
        with self._lock:
            conn = self._connection()
            try:
                yield conn
            except psycopg.OperationalError as exc:
                raise self._lost(exc) from exc

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        """The connection inside one transaction: committed (durably) when the block ends, rolled back when it
        raises. A connection lost mid-commit leaves the outcome unknown to the caller, as any store would."""
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    self._check_fence(conn)
                    yield conn
            except psycopg.OperationalError as exc:
                raise self._lost(exc) from exc

    def _lost(self, exc: BaseException) -> GatewayError:
        if isinstance(exc, psycopg.errors.DiskFull):  # SQLSTATE 53100: the server's disk, not the network
            return StoreFull(
                f"the PostgreSQL store {self.where} is out of disk space: {_first_line(exc)}; new work is "
                "refused until space is freed on the database server"
            )
        return Unavailable(
            f"the PostgreSQL store {self.where} failed: {_first_line(exc)}", reason=ReasonCode.STORE_UNREACHABLE
        )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
