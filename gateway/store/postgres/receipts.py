"""The PostgreSQL table of settled usage receipts, as a mixin over `PostgresStore`'s connection.

Owns: the SQL of receipts on PostgreSQL (one receipt per job, epoch and site: a replay settles nothing new).
The columns and their decoding are SQLite's (`gateway.store.receipts`); inserts run inside the caller's
transaction, on its cursor.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

import psycopg

from gateway.store.postgres.connection import PgConnection
from gateway.store.receipts import RECEIPT_COLUMNS, ReceiptPage, receipt_to_row, settled_from_row
from gateway.store.scope import scope_clauses
from gateway.usage.receipts import SettledReceipt

_INSERT = (
    f"INSERT INTO receipts ({RECEIPT_COLUMNS.removeprefix('id, ')}) VALUES ({', '.join(['%s'] * 18)}) "
    "ON CONFLICT (job_id, epoch, site) DO NOTHING"
)


class PgReceiptTables(PgConnection):
    def _insert_receipts(self, cursor: psycopg.Cursor[tuple[object, ...]], receipts: Sequence[SettledReceipt]) -> None:
        """Inside an open transaction: keep each receipt unless one for its job, epoch and site exists."""
        rows = [receipt_to_row(settled) for settled in receipts]
        if rows:
            cursor.executemany(_INSERT, rows)

    def list_receipts(
        self,
        tenants: Collection[str] | None,
        start: datetime,
        end: datetime,
        project: str = "",
        page_size: int = 100,
        page_token: str = "",
        or_projects: Collection[str] = (),
    ) -> ReceiptPage:
        clauses: list[str] = ["id > %s", "end_time >= %s", "end_time < %s"]
        params: list[object] = [int(page_token or 0), start.isoformat(), end.isoformat()]
        scoped, scope_params = scope_clauses(tenants, project, or_projects, mark="%s")
        clauses.extend(scoped)
        params.extend(scope_params)
        sql = f"SELECT {RECEIPT_COLUMNS} FROM receipts WHERE {' AND '.join(clauses)} ORDER BY id LIMIT %s"
        with self._read() as conn:
            rows = conn.execute(sql, (*params, page_size + 1)).fetchall()
        receipts = tuple(settled_from_row(row) for row in rows[:page_size])
        token = str(rows[page_size - 1][0]) if len(rows) > page_size else ""
        return ReceiptPage(receipts, token, tuple(str(row[0]) for row in rows[:page_size]))
