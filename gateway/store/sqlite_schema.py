"""The SQLite schema as a numbered list of migrations, the same shape as PostgreSQL's
(`gateway.store.postgres.schema`), applied when the store opens.

Owns: `MIGRATIONS` (version N is the N-th entry; a released migration is never edited, a change is a new
entry, with the same number and the same tables and columns as PostgreSQL's migration N) and `LATEST`. The file's
`PRAGMA user_version` is the number of migrations it has; `gateway.store.sqlite_open` applies the missing ones in
one write transaction at open and refuses a file with a higher number (a newer fedgate wrote it). It does not
open files nor run the store's queries.

Migrations 1 and 2 use `IF NOT EXISTS` because they describe the stores fedgate wrote before its SQLite schema
was numbered: those created every table at each open and marked the file `user_version` 1 (or not at all, before
the mark), so they hold the tables of both. Applied to such a store, 1 and 2 change no table and no row; only
the version mark moves to 2. Migrations from 3 on are plain: a file at version 2 has exactly the tables above.
"""

from __future__ import annotations

from gateway.store.migration import Migration

_FIRST = """CREATE TABLE IF NOT EXISTS jobs (
    job_id      TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    project     TEXT NOT NULL,
    state       TEXT NOT NULL,
    request_id  TEXT,
    body        TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_request ON jobs (tenant, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs (tenant, job_id);
CREATE INDEX IF NOT EXISTS jobs_active ON jobs (state) WHERE state NOT IN
    ('SUCCEEDED', 'FAILED', 'CANCELLED', 'REJECTED');
CREATE TABLE IF NOT EXISTS events (
    sequence    INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      TEXT NOT NULL,
    state       TEXT NOT NULL,
    time        TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    site        TEXT NOT NULL,
    message     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, sequence);
CREATE TABLE IF NOT EXISTS usage (
    job_id      TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    tenant      TEXT NOT NULL,
    project     TEXT NOT NULL,
    class       TEXT NOT NULL,
    cards       INTEGER NOT NULL,
    start_time  TEXT NOT NULL,
    end_time    TEXT NOT NULL,
    card_hours  REAL NOT NULL,
    PRIMARY KEY (job_id, attempt, class)
);
CREATE INDEX IF NOT EXISTS usage_end ON usage (end_time);
CREATE TABLE IF NOT EXISTS site_cursors (
    site        TEXT PRIMARY KEY,
    sequence    INTEGER NOT NULL
);
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
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id  TEXT PRIMARY KEY,
    tenant          TEXT NOT NULL,
    project         TEXT NOT NULL,
    state           TEXT NOT NULL,
    request_id      TEXT,
    body            TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS reservations_request ON reservations (tenant, request_id)
    WHERE request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS reservations_live ON reservations (state)
    WHERE state IN ('PENDING', 'CONFIRMED', 'ACTIVE');
CREATE TABLE IF NOT EXISTS receipts (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    site                TEXT NOT NULL,
    job_id              TEXT NOT NULL,
    epoch               INTEGER NOT NULL,
    attempt             INTEGER NOT NULL,
    tenant              TEXT NOT NULL,
    project             TEXT NOT NULL,
    class               TEXT NOT NULL,
    cards               INTEGER NOT NULL,
    start_time          TEXT NOT NULL,
    end_time            TEXT NOT NULL,
    exit_code           INTEGER NOT NULL,
    state               TEXT NOT NULL,
    record              BLOB NOT NULL,
    site_signature      BLOB NOT NULL,
    site_certificate    BLOB NOT NULL,
    gateway_signature   BLOB NOT NULL,
    gateway_certificate BLOB NOT NULL,
    settle_time         TEXT NOT NULL,
    UNIQUE (job_id, epoch, site)
);
CREATE INDEX IF NOT EXISTS receipts_end ON receipts (end_time);
"""

_SITE_MESSAGES = """
CREATE TABLE IF NOT EXISTS site_messages (
    site        TEXT PRIMARY KEY,
    reserved    INTEGER NOT NULL
);
"""

# SQLite has one gateway per file (its lock is the leadership), so nothing reads this table here; it exists so
# that both engines have the same tables, migration by migration.
_LEADER = """CREATE TABLE gateway_leader (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    epoch       INTEGER NOT NULL,
    holder      TEXT NOT NULL,
    address     TEXT NOT NULL,
    expire_time TEXT NOT NULL
);
INSERT INTO gateway_leader (id, epoch, holder, address, expire_time) VALUES (1, 0, '', '', '1970-01-01T00:00:00Z');
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "jobs, events, usage, site cursors, reservations, receipts and the trust tables", _FIRST),
    Migration(2, "the high mark of the gateway's message sequence to each site", _SITE_MESSAGES),
    Migration(3, "the leader lease of the gateways on this database, with its fencing epoch", _LEADER),
)
"""Version N is MIGRATIONS[N - 1]. Append only: a store keeps the migrations it applied."""

LATEST = MIGRATIONS[-1].version
