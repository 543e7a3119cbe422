"""The PostgreSQL tables of the trust layer: join tokens, used single-use tokens, revocations, the audit log.

Owns: their SQL on PostgreSQL, as a mixin over `PostgresStore`'s connection; rows are converted by SQLite's
functions (`gateway.store.security`). Marking a join token used and recording a token's first use are single
atomic statements, so two racing callers (even in two gateways) cannot both win.
"""

from __future__ import annotations

from datetime import datetime

import psycopg

from gateway.errors import AlreadyExists
from gateway.identity.join import JoinTokenRecord
from gateway.identity.revocation import Revocation
from gateway.store.postgres.connection import PgConnection
from gateway.store.security import audit_from_row, audit_to_row, join_token_from_row
from gateway.trust.audit import AuditEntry

_AUDIT_COLUMNS = "sequence, time, kind, principal, details, prev_hash, hash, signature"


class PgSecurityTables(PgConnection):
    def add_join_token(self, record: JoinTokenRecord) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO join_tokens VALUES (%s, %s, %s, %s, %s, %s, NULL)",
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
        with self._read() as conn:
            row = conn.execute(
                "SELECT token_id, site, secret_sha256, created_by, create_time, expire_time, used_time "
                "FROM join_tokens WHERE token_id = %s",
                (token_id,),
            ).fetchone()
        return join_token_from_row(row) if row else None

    def consume_join_token(self, token_id: str, now: datetime) -> bool:
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE join_tokens SET used_time = %s WHERE token_id = %s AND used_time IS NULL",
                (now.isoformat(), token_id),
            )
        return cursor.rowcount == 1

    def record_token_use(self, token_id: str, now: datetime) -> bool:
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO token_uses VALUES (%s, %s) ON CONFLICT DO NOTHING", (token_id, now.isoformat())
            )
        return cursor.rowcount == 1

    def add_revocation(self, revocation: Revocation) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO revocations (kind, value, time, reason, revoked_by) VALUES (%s, %s, %s, %s, %s)",
                (revocation.kind, revocation.value, revocation.time.isoformat(), revocation.reason, revocation.by),
            )

    def revocations(self) -> tuple[Revocation, ...]:
        with self._read() as conn:
            rows = conn.execute("SELECT kind, value, time, reason, revoked_by FROM revocations ORDER BY id").fetchall()
        return tuple(
            Revocation(str(k), str(v), datetime.fromisoformat(str(t)), str(r), str(b)) for k, v, t, r, b in rows
        )

    def append_audit(self, entry: AuditEntry) -> None:
        try:
            with self._write() as conn:
                conn.execute(
                    f"INSERT INTO audit ({_AUDIT_COLUMNS}) VALUES ({', '.join(['%s'] * 8)})", audit_to_row(entry)
                )
        except psycopg.errors.UniqueViolation as exc:
            raise AlreadyExists(f"audit entry {entry.sequence} already exists: the log is append-only") from exc

    def audit_entries(self, after: int = 0, limit: int = 1000) -> tuple[AuditEntry, ...]:
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE sequence > %s ORDER BY sequence LIMIT %s", (after, limit)
            ).fetchall()
        return tuple(audit_from_row(row) for row in rows)

    def last_audit(self) -> AuditEntry | None:
        with self._read() as conn:
            row = conn.execute(f"SELECT {_AUDIT_COLUMNS} FROM audit ORDER BY sequence DESC LIMIT 1").fetchone()
        return audit_from_row(row) if row else None
