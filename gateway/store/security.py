"""The SQLite tables of the trust layer: join tokens, used single-use tokens, revocations, the audit log.

Owns: their SQL (the tables are in `gateway.store.sqlite_schema`), as a mixin over `SqliteStore`'s connection and
lock, and the row conversions the PostgreSQL store shares (`join_token_from_row`, `audit_to_row`, `audit_from_row`).
Marking a join token used and recording a token's first use are single atomic statements, so two racing callers
cannot both win.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime

from gateway.errors import AlreadyExists
from gateway.identity.join import JoinTokenRecord
from gateway.identity.revocation import Revocation
from gateway.trust.audit import AuditEntry


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def join_token_from_row(row: tuple[object, ...]) -> JoinTokenRecord:
    """A join token from a row of the `join_tokens` table (either engine's; times are ISO text in both)."""
    token, site, digest, by, created, expires, used = (None if value is None else str(value) for value in row)
    assert token and site and digest and by and created and expires, "only used_time may be NULL"
    return JoinTokenRecord(
        token, site, digest, by, datetime.fromisoformat(created), datetime.fromisoformat(expires), _time(used)
    )


def audit_to_row(entry: AuditEntry) -> tuple[object, ...]:
    """The `audit` table's columns of one entry, in table order (either engine's)."""
    details = json.dumps(dict(entry.details), sort_keys=True)
    time = entry.time.isoformat()
    return (entry.sequence, time, entry.kind, entry.principal, details, entry.prev_hash, entry.hash, entry.signature)


def audit_from_row(row: tuple[object, ...]) -> AuditEntry:
    seq, t, k, p, d, prev, h, sig = (str(value) for value in row)
    return AuditEntry(int(seq), datetime.fromisoformat(t), k, p, json.loads(d), prev, h, sig)


class SecurityTables:
    _db: sqlite3.Connection
    _lock: threading.Lock

    def add_join_token(self, record: JoinTokenRecord) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO join_tokens VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (
                    record.token_id,
                    record.site,
                    record.secret_sha256,
                    record.created_by,
                    record.create_time.isoformat(),
                    record.expire_time.isoformat(),
                ),
            )

    def join_token(self, token_id: str) -> JoinTokenRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM join_tokens WHERE token_id = ?", (token_id,)).fetchone()
        return join_token_from_row(row) if row is not None else None

    def consume_join_token(self, token_id: str, now: datetime) -> bool:
        """Mark the token used; False when it already was (the loser of a race gets nothing)."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE join_tokens SET used_time = ? WHERE token_id = ? AND used_time IS NULL",
                (now.isoformat(), token_id),
            )
        return cursor.rowcount == 1

    def record_token_use(self, token_id: str, now: datetime) -> bool:
        """True on a single-use token's first use, False on any replay."""
        with self._lock:
            cursor = self._db.execute("INSERT OR IGNORE INTO token_uses VALUES (?, ?)", (token_id, now.isoformat()))
        return cursor.rowcount == 1

    def add_revocation(self, revocation: Revocation) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO revocations VALUES (?, ?, ?, ?, ?)",
                (revocation.kind, revocation.value, revocation.time.isoformat(), revocation.reason, revocation.by),
            )

    def revocations(self) -> tuple[Revocation, ...]:
        with self._lock:
            rows = self._db.execute("SELECT kind, value, time, reason, revoked_by FROM revocations").fetchall()
        return tuple(Revocation(k, v, datetime.fromisoformat(t), r, b) for k, v, t, r, b in rows)

    def append_audit(self, entry: AuditEntry) -> None:
        try:
            with self._lock:
                self._db.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?)", audit_to_row(entry))
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(f"audit entry {entry.sequence} already exists: the log is append-only") from exc

    def audit_entries(self, after: int = 0, limit: int = 1000) -> tuple[AuditEntry, ...]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM audit WHERE sequence > ? ORDER BY sequence LIMIT ?", (after, limit)
            ).fetchall()
        return tuple(audit_from_row(row) for row in rows)

    def last_audit(self) -> AuditEntry | None:
        with self._lock:
            row = self._db.execute("SELECT MAX(sequence) FROM audit").fetchone()
        last = int(row[0] or 0)
        entries = self.audit_entries(last - 1, 1) if last else ()
        return entries[0] if entries else None
