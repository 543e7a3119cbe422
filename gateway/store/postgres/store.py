"""The PostgreSQL store: the whole `Store` contract over one psycopg 3 connection, for federations that
outgrow one machine.

Owns: opening the store (connect, then migrate the schema in one transaction) and the SQL of jobs, events,
usage and site cursors. The other tables are mixins over the same connection, as in SQLite. Jobs are kept as
the same JSON body as SQLite's (`gateway.store.codec`) plus the columns that queries filter on, and every
listing is scoped by the same filter (`gateway.store.scope`). It decides nothing about jobs.

Idempotency does not rely on a table lock: a job with a request id is inserted with `ON CONFLICT DO NOTHING`
on the (tenant, request_id) index, so a racing transaction (another gateway on the same database) waits for
the winner and then reads its job.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

import psycopg

from gateway.jobs.model import Job, JobEvent, JobState
from gateway.store.base import JobPage
from gateway.store.codec import job_from_json, job_to_json
from gateway.store.postgres.receipts import PgReceiptTables
from gateway.store.postgres.reservations import PgReservationTables
from gateway.store.postgres.schema import migrate, require_store
from gateway.store.postgres.security import PgSecurityTables
from gateway.store.rows import event_row, usage_rows
from gateway.store.scope import scope_clauses
from gateway.usage.receipts import SettledReceipt

TERMINAL = [s.value for s in JobState if s.terminal]

_INSERT_JOB = (
    "INSERT INTO jobs (job_id, tenant, project, state, request_id, body) VALUES (%s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (tenant, request_id) WHERE request_id IS NOT NULL DO NOTHING RETURNING job_id"
)
_INSERT_EVENT = (
    "INSERT INTO events (job_id, state, time, attempt, site, message) VALUES (%s, %s, %s, %s, %s, %s) "
    "RETURNING sequence"
)


class PostgresStore(PgSecurityTables, PgReservationTables, PgReceiptTables):
    """`postgresql://user@host:port/dbname` (any libpq URL). The schema is migrated when it opens."""

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        """`read_only` (offline tools): never migrate, and refuse a database that holds no fedgate store."""
        super().__init__(url)
        try:
            with self._lock:
                if read_only:
                    require_store(self._connection(), self.where)
                else:
                    migrate(self._connection(), self.where)
        except psycopg.OperationalError as exc:
            self.close()
            raise self._lost(exc) from exc
        except BaseException:
            self.close()
            raise

    def create_job(self, job: Job, event: JobEvent) -> tuple[Job, bool]:
        return self.create_jobs([(job, event)])[0]

    def create_jobs(self, batch: Sequence[tuple[Job, JobEvent]]) -> list[tuple[Job, bool]]:
        """Insert many jobs in one transaction (group commit), idempotent per (tenant, request_id); statements
        are pipelined, so a batch costs a few round trips, not two per job."""
        if not batch:
            return []
        with self._write() as conn, conn.cursor() as cursor:
            rows = [
                (j.job_id, j.spec.tenant, j.spec.project, j.state.value, j.request_id or None, job_to_json(j))
                for j, _ in batch
            ]
            cursor.executemany(_INSERT_JOB, rows, returning=True)
            inserted: list[bool] = []
            for _ in batch:
                inserted.append(cursor.fetchone() is not None)
                cursor.nextset()
            kept = [event for (_, event), new in zip(batch, inserted, strict=True) if new]
            if kept:
                cursor.executemany(_INSERT_EVENT.removesuffix(" RETURNING sequence"), [event_row(e) for e in kept])
            known = {(j.spec.tenant, j.request_id) for (j, _), new in zip(batch, inserted, strict=True) if not new}
            stored: dict[tuple[str, str], Job] = {}
            if known:  # the jobs an earlier call (or an earlier entry of this batch) stored for these keys
                tenants, requests = zip(*known, strict=True)
                cursor.execute(
                    "SELECT tenant, request_id, body FROM jobs "
                    "WHERE (tenant, request_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
                    (list(tenants), list(requests)),
                )
                stored = {(str(t), str(r)): job_from_json(str(b)) for t, r, b in cursor.fetchall()}
        return [
            (job, True) if new else (stored[(job.spec.tenant, job.request_id)], False)
            for (job, _), new in zip(batch, inserted, strict=True)
        ]

    def get_job(self, job_id: str) -> Job | None:
        with self._read() as conn:
            row = conn.execute("SELECT body FROM jobs WHERE job_id = %s", (job_id,)).fetchone()
        return job_from_json(str(row[0])) if row else None

    def job_by_request(self, tenant: str, request_id: str) -> Job | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT body FROM jobs WHERE tenant = %s AND request_id = %s", (tenant, request_id)
            ).fetchone()
        return job_from_json(str(row[0])) if row else None

    def list_jobs(
        self,
        tenants: Collection[str] | None,
        project: str = "",
        states: Collection[JobState] = (),
        page_size: int = 100,
        page_token: str = "",
        or_projects: Collection[str] = (),
    ) -> JobPage:
        clauses, params = ["job_id > %s"], list[object]([page_token])
        scoped, scope_params = scope_clauses(tenants, project, or_projects, mark="%s")
        clauses.extend(scoped)
        params.extend(scope_params)
        if states:
            clauses.append("state = ANY(%s)")
            params.append([s.value for s in states])
        sql = f"SELECT job_id, body FROM jobs WHERE {' AND '.join(clauses)} ORDER BY job_id LIMIT %s"
        with self._read() as conn:
            rows = conn.execute(sql, (*params, page_size + 1)).fetchall()
        jobs = tuple(job_from_json(str(body)) for _, body in rows[:page_size])
        token = str(rows[page_size - 1][0]) if len(rows) > page_size else ""
        return JobPage(jobs, token)

    def save_transition(self, job: Job, event: JobEvent, site_cursor: tuple[str, int] | None = None) -> JobEvent:
        return self.save_transitions([(job, event, site_cursor)])[0]

    def save_transitions(
        self,
        batch: Sequence[tuple[Job, JobEvent, tuple[str, int] | None]],
        receipts: Sequence[SettledReceipt] = (),
        cursors: Sequence[tuple[str, int]] = (),
    ) -> list[JobEvent]:
        sequences: list[int] = []
        with self._write() as conn, conn.cursor() as cursor:
            if batch:
                cursor.executemany(
                    "UPDATE jobs SET state = %s, body = %s WHERE job_id = %s",
                    [(job.state.value, job_to_json(job), job.job_id) for job, _, _ in batch],
                )
                cursor.executemany(_INSERT_EVENT, [event_row(event) for _, event, _ in batch], returning=True)
                for _ in batch:
                    row = cursor.fetchone()
                    sequences.append(int(str(row[0])) if row else 0)
                    cursor.nextset()
            usage = [row for job, _, _ in batch for row in usage_rows(job)]
            if usage:
                cursor.executemany(
                    "INSERT INTO usage VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", usage
                )
            raised = [site_cursor for _, _, site_cursor in batch if site_cursor is not None] + list(cursors)
            if raised:
                cursor.executemany(
                    "INSERT INTO site_cursors (site, sequence) VALUES (%s, %s) ON CONFLICT (site) "
                    "DO UPDATE SET sequence = GREATEST(site_cursors.sequence, excluded.sequence)",
                    raised,
                )
            self._insert_receipts(cursor, receipts)
        return [
            JobEvent(e.job_id, e.state, e.time, e.attempt, e.site, e.message, seq)
            for (_, e, _), seq in zip(batch, sequences, strict=True)
        ]

    def usage_between(self, start: datetime, end: datetime) -> list[tuple[str, str, str, float, int]]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT tenant, project, class, SUM(card_hours), COUNT(*) FROM usage "
                "WHERE end_time >= %s AND end_time < %s GROUP BY tenant, project, class "
                "ORDER BY tenant, project, class",
                (start.isoformat(), end.isoformat()),
            ).fetchall()
        return [(str(t), str(p), str(c), float(str(h)), int(str(n))) for t, p, c, h, n in rows]

    def card_hours_since(self, since: datetime) -> dict[tuple[str, str], float]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT tenant, project, SUM(card_hours) FROM usage WHERE end_time >= %s GROUP BY tenant, project",
                (since.isoformat(),),
            ).fetchall()
        return {(str(t), str(p)): float(str(h)) for t, p, h in rows}

    def events(self, job_id: str) -> tuple[JobEvent, ...]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT job_id, state, time, attempt, site, message, sequence FROM events "
                "WHERE job_id = %s ORDER BY sequence",
                (job_id,),
            ).fetchall()
        return tuple(
            JobEvent(
                str(j), JobState(str(s)), datetime.fromisoformat(str(t)), int(str(a)), str(site), str(m), int(str(q))
            )
            for j, s, t, a, site, m, q in rows
        )

    def active_jobs(self) -> tuple[Job, ...]:
        with self._read() as conn:
            rows = conn.execute("SELECT body FROM jobs WHERE state <> ALL(%s) ORDER BY job_id", (TERMINAL,)).fetchall()
        return tuple(job_from_json(str(body)) for (body,) in rows)

    def site_cursor(self, site: str) -> int:
        with self._read() as conn:
            row = conn.execute("SELECT sequence FROM site_cursors WHERE site = %s", (site,)).fetchone()
        return int(str(row[0])) if row else 0

    def advance_site_cursor(self, site: str, sequence: int) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO site_cursors (site, sequence) VALUES (%s, %s) ON CONFLICT (site) "
                "DO UPDATE SET sequence = GREATEST(site_cursors.sequence, excluded.sequence)",
                (site, sequence),
            )

    def reserve_site_messages(self, site: str, count: int) -> int:
        with self._write() as conn:  # one statement: a racing gateway waits on the row, then adds its block
            row = conn.execute(
                "INSERT INTO site_messages (site, reserved) VALUES (%s, %s) ON CONFLICT (site) "
                "DO UPDATE SET reserved = site_messages.reserved + excluded.reserved RETURNING reserved",
                (site, count),
            ).fetchone()
        assert row is not None
        return int(str(row[0])) - count + 1
