"""The SQLite tables of the trust layer: join tokens, used single-use tokens, revocations, the audit log.

Owns: their schema and SQL, as a mixin over `SqliteStore`'s connection and lock. Marking a join token used
and recording a token's first use are single atomic statements, so two racing callers cannot both win.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime

from gateway.identity.join import JoinTokenRecord
from gateway.identity.revocation import Revocation
from gateway.trust.audit import AuditEntry

SECURITY_SCHEMA = """
CREATE TABLE IF NOT EXISTS join_tokens (
    token_id      TEXT PRIMARY KEY,
    site          TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    create_time   TEXT NOT NULL,
    expire_time   TEXT NOT NULL,
    used_time     TEXT
);
CREATE TABLE IF NOT EXISTS token_uses (
    token_id    TEXT PRIMARY KEY,
    use_time    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS revocations (
    kind        TEXT NOT NULL,
    value       TEXT NOT NULL,
    time        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    revoked_by  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    sequence    INTEGER PRIMARY KEY,
    time        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    principal   TEXT NOT NULL,
    details     TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    signature   TEXT NOT NULL
);
"""


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


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
        if row is None:
            return None
        token, site, digest, by, created, expires, used = row
        return JoinTokenRecord(
            token, site, digest, by, datetime.fromisoformat(created), datetime.fromisoformat(expires), _time(used)
        )

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
        with self._lock:
            self._db.execute(
                "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.sequence,
                    entry.time.isoformat(),
                    entry.kind,
                    entry.principal,
                    json.dumps(dict(entry.details), sort_keys=True),
                    entry.prev_hash,
                    entry.hash,
                    entry.signature,
                ),
            )

    def audit_entries(self, after: int = 0, limit: int = 1000) -> tuple[AuditEntry, ...]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM audit WHERE sequence > ? ORDER BY sequence LIMIT ?", (after, limit)
            ).fetchall()
        return tuple(
            AuditEntry(seq, datetime.fromisoformat(t), k, p, json.loads(d), prev, h, sig)
            for seq, t, k, p, d, prev, h, sig in rows
        )

    def last_audit(self) -> AuditEntry | None:
        with self._lock:
            row = self._db.execute("SELECT MAX(sequence) FROM audit").fetchone()
        last = int(row[0] or 0)
        entries = self.audit_entries(last - 1, 1) if last else ()
        return entries[0] if entries else None
