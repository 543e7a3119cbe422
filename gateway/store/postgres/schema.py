"""The PostgreSQL schema as a numbered list of migrations, applied when the store opens.

Owns: `MIGRATIONS` (version N is the N-th entry; a released migration is never edited, a change is a new
entry), the `schema_version` table that records which ones a database has, and `migrate`: in ONE transaction,
under an advisory lock so that two gateways opening the same database at once apply each migration once, it
applies what is missing, or refuses a database written by a newer fedgate with a message naming the fix.

The columns mirror the SQLite schema so that both engines answer the contract alike: times are ISO 8601 text
(every time the gateway writes is UTC, so text order is time order, as in SQLite), and every key that is
compared or ordered is `COLLATE "C"` (byte order, SQLite's), whatever the database's default collation.
"""

from __future__ import annotations

import psycopg

from fedgate.common.reasons import ReasonCode
from gateway.errors import FailedPrecondition, StoreRefused
from gateway.jobs.model import JobState
from gateway.reservations.model import ReservationState
from gateway.store.migration import Migration

LOCK_KEY = 0x66656467617465  # "fedgate": the advisory lock that serialises migrations across gateways


_TERMINAL = ", ".join(f"'{s.value}'" for s in JobState if s.terminal)
_LIVE = ", ".join(f"'{s.value}'" for s in ReservationState if s.live)

_FIRST = f"""
CREATE TABLE jobs (
    job_id      TEXT COLLATE "C" PRIMARY KEY,
    tenant      TEXT COLLATE "C" NOT NULL,
    project     TEXT COLLATE "C" NOT NULL,
    state       TEXT NOT NULL,
    request_id  TEXT COLLATE "C",
    body        TEXT NOT NULL
);
CREATE UNIQUE INDEX jobs_request ON jobs (tenant, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX jobs_tenant ON jobs (tenant, job_id);
CREATE INDEX jobs_active ON jobs (state) WHERE state NOT IN ({_TERMINAL});
CREATE TABLE events (
    sequence    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      TEXT COLLATE "C" NOT NULL,
    state       TEXT NOT NULL,
    time        TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    site        TEXT NOT NULL,
    message     TEXT NOT NULL
);
CREATE INDEX events_job ON events (job_id, sequence);
CREATE TABLE usage (
    job_id      TEXT COLLATE "C" NOT NULL,
    attempt     INTEGER NOT NULL,
    tenant      TEXT COLLATE "C" NOT NULL,
    project     TEXT COLLATE "C" NOT NULL,
    class       TEXT COLLATE "C" NOT NULL,
    cards       INTEGER NOT NULL,
    start_time  TEXT COLLATE "C" NOT NULL,
    end_time    TEXT COLLATE "C" NOT NULL,
    card_hours  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (job_id, attempt, class)
);
CREATE INDEX usage_end ON usage (end_time);
CREATE TABLE site_cursors (
    site        TEXT PRIMARY KEY,
    sequence    BIGINT NOT NULL
);
CREATE TABLE reservations (
    reservation_id  TEXT COLLATE "C" PRIMARY KEY,
    tenant          TEXT COLLATE "C" NOT NULL,
    project         TEXT COLLATE "C" NOT NULL,
    state           TEXT NOT NULL,
    request_id      TEXT COLLATE "C",
    body            TEXT NOT NULL
);
CREATE UNIQUE INDEX reservations_request ON reservations (tenant, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX reservations_live ON reservations (state) WHERE state IN ({_LIVE});
CREATE TABLE receipts (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site                TEXT NOT NULL,
    job_id              TEXT NOT NULL,
    epoch               BIGINT NOT NULL,
    attempt             INTEGER NOT NULL,
    tenant              TEXT COLLATE "C" NOT NULL,
    project             TEXT COLLATE "C" NOT NULL,
    class               TEXT NOT NULL,
    cards               INTEGER NOT NULL,
    start_time          TEXT NOT NULL,
    end_time            TEXT COLLATE "C" NOT NULL,
    exit_code           INTEGER NOT NULL,
    state               TEXT NOT NULL,
    record              BYTEA NOT NULL,
    site_signature      BYTEA NOT NULL,
    site_certificate    BYTEA NOT NULL,
    gateway_signature   BYTEA NOT NULL,
    gateway_certificate BYTEA NOT NULL,
    settle_time         TEXT NOT NULL,
    UNIQUE (job_id, epoch, site)
);
CREATE INDEX receipts_end ON receipts (end_time);
CREATE TABLE join_tokens (
    token_id      TEXT PRIMARY KEY,
    site          TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    create_time   TEXT NOT NULL,
    expire_time   TEXT NOT NULL,
    used_time     TEXT
);
CREATE TABLE token_uses (
    token_id    TEXT PRIMARY KEY,
    use_time    TEXT NOT NULL
);
CREATE TABLE revocations (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        TEXT NOT NULL,
    value       TEXT NOT NULL,
    time        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    revoked_by  TEXT NOT NULL
);
CREATE TABLE audit (
    sequence    BIGINT PRIMARY KEY,
    time        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    principal   TEXT NOT NULL,
    details     TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    signature   TEXT NOT NULL
);
"""

_SITE_MESSAGES = """
CREATE TABLE site_messages (
    site        TEXT PRIMARY KEY,
    reserved    BIGINT NOT NULL
);
"""

_LEADER = """
CREATE TABLE gateway_leader (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    epoch       BIGINT NOT NULL,
    holder      TEXT NOT NULL,
    address     TEXT NOT NULL,
    expire_time TIMESTAMPTZ NOT NULL
);
INSERT INTO gateway_leader (id, epoch, holder, address, expire_time)
    VALUES (1, 0, '', '', '1970-01-01T00:00:00Z');
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "jobs, events, usage, site cursors, reservations, receipts and the trust tables", _FIRST),
    Migration(2, "the high mark of the gateway's message sequence to each site", _SITE_MESSAGES),
    Migration(3, "the leader lease of the gateways on this database, with its fencing epoch", _LEADER),
)
"""Version N is MIGRATIONS[N - 1]. Append only: a database keeps the migrations it applied."""

LATEST = MIGRATIONS[-1].version

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version      INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    applied_time TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


def require_store(conn: psycopg.Connection[tuple[object, ...]], where: str) -> None:
    """Refuse (STORE_MISSING) a database without a fedgate schema, changing nothing: a read-only look."""
    with conn.transaction():
        row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
        if row is not None and row[0]:
            row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    if row is None or not row[0]:
        raise StoreRefused(
            f"there is no fedgate store in the PostgreSQL database {where}: check the URL (a read-only look "
            "never creates one)",
            reason=ReasonCode.STORE_MISSING,
        )


def migrate(conn: psycopg.Connection[tuple[object, ...]], where: str) -> int:
    """Bring the database to LATEST in one transaction and return the version it had before (0: empty).
    Raises FailedPrecondition (STORE_SCHEMA_TOO_NEW) for a database a newer fedgate wrote, changing nothing."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        conn.execute(_VERSION_TABLE)
        row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
        found = int(str(row[0])) if row is not None else 0
        if found > LATEST:
            raise FailedPrecondition(
                f"the PostgreSQL store {where} has schema version {found}, newer than this fedgate knows "
                f"(version {LATEST}): run the fedgate release that wrote it (or a newer one), or point the "
                "gateway's `store` at another database; this one was left unchanged",
                reason=ReasonCode.STORE_SCHEMA_TOO_NEW,
            )
        for migration in MIGRATIONS[found:]:
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO schema_version (version, name) VALUES (%s, %s)", (migration.version, migration.name)
            )
    return found
