"""The embedded store: SQLite in WAL mode, one connection, synchronous=FULL so a commit is durable.

Owns: the SQL of the `Store` contract (the tables are `gateway.store.sqlite_schema`'s numbered migrations). Jobs are
kept as a JSON body plus the columns that queries filter on. Every method of the contract raises a `StoreError` (full
disk, I/O error, read-only file) instead of SQLite's own errors, and logs the cause. It does not decide anything
about jobs; opening the file (the one-writer lock, refusing a damaged file) is `gateway.store.sqlite_open`.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any, TypeVar

from gateway.jobs.model import Job, JobEvent, JobState
from gateway.store.base import JobPage, Store
from gateway.store.codec import job_from_json, job_to_json
from gateway.store.receipts import ReceiptTables
from gateway.store.reservations import ReservationTables
from gateway.store.rows import event_row, usage_rows
from gateway.store.scope import scope_clauses
from gateway.store.security import SecurityTables
from gateway.store.sqlite_open import StoreLock, open_database, plain_path, store_error
from gateway.store.sqlite_schema import MIGRATIONS
from gateway.usage.receipts import SettledReceipt

TERMINAL = tuple(s.value for s in JobState if s.terminal)
SCRIPTS = tuple(migration.sql for migration in MIGRATIONS)
_RAISE_CURSOR = (  # a site's update cursor only moves forward
    "INSERT INTO site_cursors (site, sequence) VALUES (?, ?) "
    "ON CONFLICT (site) DO UPDATE SET sequence = MAX(sequence, excluded.sequence)"
)
"""The schema's migrations, version N being SCRIPTS[N - 1]."""


class SqliteStore(SecurityTables, ReservationTables, ReceiptTables):
    def __init__(self, path: str, *, read_only: bool = False) -> None:
        """Open (or create) the database at `path`, or an in-memory one for ":memory:". A writer holds the
        store's lock until `close`, so a second writing process is refused (`StoreRefused`, STORE_IN_USE);
        `read_only` takes no lock and never writes, for offline tools beside a running gateway."""
        self._lock = threading.Lock()
        self._path = plain_path(path)
        self._holder: StoreLock | None = None
        if path == ":memory:":
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript("\n".join(SCRIPTS))
        else:
            self._db, self._holder = open_database(path, SCRIPTS, read_only=read_only)

    def _insert_event(self, event: JobEvent) -> JobEvent:
        cursor = self._db.execute(
            "INSERT INTO events (job_id, state, time, attempt, site, message) VALUES (?, ?, ?, ?, ?, ?)",
            event_row(event),
        )
        return JobEvent(
            event.job_id,
            event.state,
            event.time,
            event.attempt,
            event.site,
            event.message,
            cursor.lastrowid or 0,
        )

    def create_job(self, job: Job, event: JobEvent) -> tuple[Job, bool]:
        return self.create_jobs([(job, event)])[0]

    def create_jobs(self, batch: Sequence[tuple[Job, JobEvent]]) -> list[tuple[Job, bool]]:
        """Insert many jobs in one transaction (one fsync: group commit), idempotent per (tenant, request_id)."""
        results: list[tuple[Job, bool]] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for job, event in batch:
                    results.append(self._insert_job(job, event))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return results

    def _insert_job(self, job: Job, event: JobEvent) -> tuple[Job, bool]:
        if job.request_id:
            row = self._db.execute(
                "SELECT body FROM jobs WHERE tenant = ? AND request_id = ?", (job.spec.tenant, job.request_id)
            ).fetchone()
            if row is not None:  # also catches a duplicate earlier in the same batch
                return job_from_json(row[0]), False
        self._db.execute(
            "INSERT INTO jobs (job_id, tenant, project, state, request_id, body) VALUES (?, ?, ?, ?, ?, ?)",
            (job.job_id, job.spec.tenant, job.spec.project, job.state.value, job.request_id or None, job_to_json(job)),
        )
        self._insert_event(event)
        return job, True

    def get_job(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return job_from_json(row[0]) if row else None

    def job_by_request(self, tenant: str, request_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute(
                "SELECT body FROM jobs WHERE tenant = ? AND request_id = ?", (tenant, request_id)
            ).fetchone()
        return job_from_json(row[0]) if row else None

    def list_jobs(
        self,
        tenants: Collection[str] | None,
        project: str = "",
        states: Collection[JobState] = (),
        page_size: int = 100,
        page_token: str = "",
        or_projects: Collection[str] = (),
    ) -> JobPage:
        clauses, params = ["job_id > ?"], list[object]([page_token])
        scoped, scope_params = scope_clauses(tenants, project, or_projects)
        clauses.extend(scoped)
        params.extend(scope_params)
        if states:
            clauses.append(f"state IN ({','.join('?' * len(states))})")
            params.extend(s.value for s in states)
        sql = f"SELECT job_id, body FROM jobs WHERE {' AND '.join(clauses)} ORDER BY job_id LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*params, page_size + 1)).fetchall()
        jobs = tuple(job_from_json(body) for _, body in rows[:page_size])
        token = rows[page_size - 1][0] if len(rows) > page_size else ""
        return JobPage(jobs, token)

    def save_transition(self, job: Job, event: JobEvent, site_cursor: tuple[str, int] | None = None) -> JobEvent:
        return self.save_transitions([(job, event, site_cursor)])[0]

    def save_transitions(
        self,
        batch: Sequence[tuple[Job, JobEvent, tuple[str, int] | None]],
        receipts: Sequence[SettledReceipt] = (),
        cursors: Sequence[tuple[str, int]] = (),
    ) -> list[JobEvent]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # One statement per table for the whole batch (a scheduling cycle's thousands of dispatches).
                self._db.executemany(
                    "UPDATE jobs SET state = ?, body = ? WHERE job_id = ?",
                    [(job.state.value, job_to_json(job), job.job_id) for job, _, _ in batch],
                )
                stored = self._insert_events([event for _, event, _ in batch])
                for job, _, site_cursor in batch:
                    if usage := usage_rows(job):  # an attempt ended: its card-hours, a preempted one's too
                        self._db.executemany("INSERT OR IGNORE INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", usage)
                    if site_cursor is not None:
                        self._db.execute(_RAISE_CURSOR, site_cursor)
                self._db.executemany(_RAISE_CURSOR, cursors)
                self._insert_receipts(receipts)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return stored

    def _insert_events(self, events: Sequence[JobEvent]) -> list[JobEvent]:
        """Insert events in order inside the caller's write transaction; returns them with their sequences.
        One `executemany`: AUTOINCREMENT gives the rows of one writer's transaction consecutive sequences
        (each the largest so far plus one), so the last one tells them all."""
        if not events:
            return []
        self._db.executemany(
            "INSERT INTO events (job_id, state, time, attempt, site, message) VALUES (?, ?, ?, ?, ?, ?)",
            [event_row(event) for event in events],
        )
        last = self._db.execute("SELECT last_insert_rowid()").fetchone()[0]
        first = last - len(events) + 1
        return [
            JobEvent(e.job_id, e.state, e.time, e.attempt, e.site, e.message, first + i) for i, e in enumerate(events)
        ]

    def usage_between(self, start: datetime, end: datetime) -> list[tuple[str, str, str, float, int]]:
        """(tenant, project, class, card-hours, attempts) of attempts that ended in [start, end)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT tenant, project, class, SUM(card_hours), COUNT(*) FROM usage "
                "WHERE end_time >= ? AND end_time < ? GROUP BY tenant, project, class ORDER BY tenant, project, class",
                (start.isoformat(), end.isoformat()),
            ).fetchall()
        return [(t, p, c, float(h), int(n)) for t, p, c, h, n in rows]

    def card_hours_since(self, since: datetime) -> dict[tuple[str, str], float]:
        with self._lock:
            rows = self._db.execute(
                "SELECT tenant, project, SUM(card_hours) FROM usage WHERE end_time >= ? GROUP BY tenant, project",
                (since.isoformat(),),
            ).fetchall()
        return {(t, p): float(h) for t, p, h in rows}

    def events(self, job_id: str) -> tuple[JobEvent, ...]:
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id, state, time, attempt, site, message, sequence FROM events "
                "WHERE job_id = ? ORDER BY sequence",
                (job_id,),
            ).fetchall()
        return tuple(
            JobEvent(j, JobState(s), datetime.fromisoformat(t), a, site, m, seq) for j, s, t, a, site, m, seq in rows
        )

    def active_jobs(self) -> tuple[Job, ...]:
        marks = ",".join("?" * len(TERMINAL))
        with self._lock:
            rows = self._db.execute(
                f"SELECT body FROM jobs WHERE state NOT IN ({marks}) ORDER BY job_id", TERMINAL
            ).fetchall()
        return tuple(job_from_json(body) for (body,) in rows)

    def site_cursor(self, site: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT sequence FROM site_cursors WHERE site = ?", (site,)).fetchone()
        return int(row[0]) if row else 0

    def advance_site_cursor(self, site: str, sequence: int) -> None:
        with self._lock:
            self._db.execute(_RAISE_CURSOR, (site, sequence))

    def reserve_site_messages(self, site: str, count: int) -> int:
        with self._lock:
            row = self._db.execute(
                "INSERT INTO site_messages (site, reserved) VALUES (?, ?) "
                "ON CONFLICT (site) DO UPDATE SET reserved = reserved + excluded.reserved RETURNING reserved",
                (site, count),
            ).fetchone()
        return int(row[0]) - count + 1

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            finally:
                if self._holder is not None:
                    self._holder.release()  # after the connection: the next writer finds the file at rest
                    self._holder = None


log = logging.getLogger("fedgate.gateway")
Method = TypeVar("Method", bound=Callable[..., Any])


def _translating(method: Method) -> Method:
    """Run a store method with SQLite's disk errors turned into the `StoreError` family (the cause logged)."""

    @functools.wraps(method)
    def wrapper(self: SqliteStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            translated = store_error(exc)
            if translated is None:
                raise  # a bug (bad SQL, a broken constraint): INTERNAL, with its traceback
            error, cause = translated
            log.error("store %s: %s failed: %s", self._path, method.__name__, cause)
            raise error from exc

    return wrapper  # type: ignore[return-value]


# The store boundary is the contract: every method of `Store`, whichever mixin defines it, translates.
for _name in sorted(n for n, v in vars(Store).items() if callable(v) and not n.startswith("_")):
    setattr(SqliteStore, _name, _translating(getattr(SqliteStore, _name)))
