"""The SQLite table of settled usage receipts, as a mixin over `SqliteStore`'s connection and lock.

Owns: its SQL (the table, one receipt per job, epoch and site so that a replay settles nothing new, is in
`gateway.store.sqlite_schema`). The signed
bytes are kept exactly as received; the record's fields are copied into columns only so that listings can
filter (time, tenant, project) and be authorised without parsing protobuf. Whoever verifies a receipt must
parse the signed bytes, never trust the columns. Inserts run inside the caller's transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from gateway.jobs.model import JobState
from gateway.store.scope import scope_clauses
from gateway.usage.receipts import SettledReceipt, SiteReceipt, UsageRecord

RECEIPT_COLUMNS = (
    "id, site, job_id, epoch, attempt, tenant, project, class, cards, start_time, end_time, exit_code, state, "
    "record, site_signature, site_certificate, gateway_signature, gateway_certificate, settle_time"
)


@dataclass(frozen=True)
class ReceiptPage:
    receipts: tuple[SettledReceipt, ...]
    next_page_token: str
    positions: tuple[str, ...] = ()
    """Each receipt's place in the listing (a page token that continues after it), for a page ended early."""


class ReceiptTables:
    _db: sqlite3.Connection
    _lock: threading.Lock

    def _insert_receipts(self, receipts: Sequence[SettledReceipt]) -> None:
        """Inside an open transaction: keep each receipt unless one for its job, epoch and site exists."""
        for settled in receipts:
            self._db.execute(
                f"INSERT OR IGNORE INTO receipts ({RECEIPT_COLUMNS.removeprefix('id, ')}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                receipt_to_row(settled),
            )

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
        """Settled receipts of attempts that ended in [start, end), in settlement order. tenants=None: every
        tenant; `or_projects` adds these (joint) projects' receipts whichever tenant ran them."""
        clauses: list[str] = ["id > ?", "end_time >= ?", "end_time < ?"]
        params: list[object] = [int(page_token or 0), start.isoformat(), end.isoformat()]
        scoped, scope_params = scope_clauses(tenants, project, or_projects)
        clauses.extend(scoped)
        params.extend(scope_params)
        sql = f"SELECT {RECEIPT_COLUMNS} FROM receipts WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*params, page_size + 1)).fetchall()
        receipts = tuple(settled_from_row(row) for row in rows[:page_size])
        token = str(rows[page_size - 1][0]) if len(rows) > page_size else ""
        return ReceiptPage(receipts, token, tuple(str(row[0]) for row in rows[:page_size]))


def receipt_to_row(settled: SettledReceipt) -> tuple[object, ...]:
    """A settled receipt as the values of RECEIPT_COLUMNS without `id` (either engine's insert)."""
    r = settled.record
    assert r is not None, "only checked receipts are settled"
    return (
        r.site,
        r.job_id,
        r.epoch,
        r.attempt,
        r.tenant,
        r.project,
        r.accelerator_class,
        r.cards,
        r.start_time.isoformat(),
        r.end_time.isoformat(),
        r.exit_code,
        r.state.value,
        settled.receipt.record_bytes,
        settled.receipt.signature,
        settled.site_certificate,
        settled.gateway_signature,
        settled.gateway_certificate,
        settled.settle_time.isoformat(),
    )


def settled_from_row(row: tuple[object, ...]) -> SettledReceipt:
    """A receipt from a row of RECEIPT_COLUMNS (either engine's)."""
    (_, site, job_id, epoch, attempt, tenant, project, cls, cards, start, end, exit_code, state) = row[:13]
    record_bytes, site_signature, site_certificate, gateway_signature, gateway_certificate, settle = row[13:]
    record = UsageRecord(
        str(site),
        str(job_id),
        int(str(epoch)),
        int(str(attempt)),
        str(tenant),
        str(project),
        str(cls),
        int(str(cards)),
        datetime.fromisoformat(str(start)),
        datetime.fromisoformat(str(end)),
        int(str(exit_code)),
        JobState(str(state)),
    )
    return SettledReceipt(
        SiteReceipt(_blob(record_bytes), _blob(site_signature), record),
        _blob(site_certificate),
        _blob(gateway_signature),
        _blob(gateway_certificate),
        datetime.fromisoformat(str(settle)),
    )


def _blob(value: object) -> bytes:
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else b""
