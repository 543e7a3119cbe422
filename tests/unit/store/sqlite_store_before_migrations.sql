-- A gateway store as fedgate wrote it before SQLite had numbered migrations (CREATE TABLE IF NOT EXISTS
-- at every open, marked user_version 1): two jobs, a site cursor and a message-sequence block. Made by
-- that code with sqlite3's iterdump; tests/unit/store/test_sqlite_migrations.py rebuilds the file from it.
PRAGMA application_id = 1717920871;
PRAGMA user_version = 1;
BEGIN TRANSACTION;
CREATE TABLE audit (
    sequence    INTEGER PRIMARY KEY,
    time        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    principal   TEXT NOT NULL,
    details     TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    signature   TEXT NOT NULL
);
CREATE TABLE events (
    sequence    INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      TEXT NOT NULL,
    state       TEXT NOT NULL,
    time        TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    site        TEXT NOT NULL,
    message     TEXT NOT NULL
);
INSERT INTO "events" VALUES(1,'job-00001','QUEUED','2026-12-01T00:00:00+00:00',0,'','');
INSERT INTO "events" VALUES(2,'job-00002','QUEUED','2026-12-01T00:00:00+00:00',0,'','');
CREATE TABLE jobs (
    job_id      TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    project     TEXT NOT NULL,
    state       TEXT NOT NULL,
    request_id  TEXT,
    body        TEXT NOT NULL
);
INSERT INTO "jobs" VALUES('job-00001','deepsea-ai','llama-sft','QUEUED','r-1','{"job_id":"job-00001","spec":{"tenant":"deepsea-ai","project":"llama-sft","name":"","class":"ascend-910b","capability":null,"cards":1,"runs":[{"stack":"cann","image":"","command":["python3","-c","pass","#"]}],"max_runtime_s":3600.0,"labels":[],"env":[],"priority_class":"","topology":[1,0],"data":["",""],"reservation":""},"state":"QUEUED","request_id":"r-1","owner":"","attempt":0,"epoch":0,"placements":[],"reasons":[],"exit_code":0,"create_time":"2026-12-01T00:00:00+00:00","update_time":"2026-12-01T00:00:00+00:00","start_time":null,"end_time":null}');
INSERT INTO "jobs" VALUES('job-00002','deepsea-ai','llama-sft','QUEUED','r-2','{"job_id":"job-00002","spec":{"tenant":"deepsea-ai","project":"llama-sft","name":"","class":"ascend-910b","capability":null,"cards":1,"runs":[{"stack":"cann","image":"","command":["python3","-c","pass","#"]}],"max_runtime_s":3600.0,"labels":[],"env":[],"priority_class":"","topology":[1,0],"data":["",""],"reservation":""},"state":"QUEUED","request_id":"r-2","owner":"","attempt":0,"epoch":0,"placements":[],"reasons":[],"exit_code":0,"create_time":"2026-12-01T00:00:00+00:00","update_time":"2026-12-01T00:00:00+00:00","start_time":null,"end_time":null}');
CREATE TABLE join_tokens (
    token_id      TEXT PRIMARY KEY,
    site          TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    create_time   TEXT NOT NULL,
    expire_time   TEXT NOT NULL,
    used_time     TEXT
);
CREATE TABLE receipts (
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
CREATE TABLE reservations (
    reservation_id  TEXT PRIMARY KEY,
    tenant          TEXT NOT NULL,
    project         TEXT NOT NULL,
    state           TEXT NOT NULL,
    request_id      TEXT,
    body            TEXT NOT NULL
);
CREATE TABLE revocations (
    kind        TEXT NOT NULL,
    value       TEXT NOT NULL,
    time        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    revoked_by  TEXT NOT NULL
);
CREATE TABLE site_cursors (
    site        TEXT PRIMARY KEY,
    sequence    INTEGER NOT NULL
);
INSERT INTO "site_cursors" VALUES('centre-a',7);
CREATE TABLE site_messages (
    site        TEXT PRIMARY KEY,
    reserved    INTEGER NOT NULL
);
INSERT INTO "site_messages" VALUES('centre-a',64);
CREATE TABLE token_uses (
    token_id    TEXT PRIMARY KEY,
    use_time    TEXT NOT NULL
);
CREATE TABLE usage (
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
CREATE UNIQUE INDEX jobs_request ON jobs (tenant, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX jobs_tenant ON jobs (tenant, job_id);
CREATE INDEX jobs_active ON jobs (state) WHERE state NOT IN
    ('SUCCEEDED', 'FAILED', 'CANCELLED', 'REJECTED');
CREATE INDEX events_job ON events (job_id, sequence);
CREATE INDEX usage_end ON usage (end_time);
CREATE UNIQUE INDEX reservations_request ON reservations (tenant, request_id)
    WHERE request_id IS NOT NULL;
CREATE INDEX reservations_live ON reservations (state)
    WHERE state IN ('PENDING', 'CONFIRMED', 'ACTIVE');
CREATE INDEX receipts_end ON receipts (end_time);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('events',2);
COMMIT;
