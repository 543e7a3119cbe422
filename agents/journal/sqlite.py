"""The agent's durable journal: unacknowledged job updates, the two counters and started attempts in SQLite.

Owns: the schema and SQL of the `UpdateJournal` protocol on one SQLite file in the agent's state directory,
in WAL mode with synchronous=FULL, so that every `append`, `advance_cursor`, `acknowledge` and
`record_started` has reached the disk before it returns. Updates come back in sequence order; the highest
sequence ever used is kept in its own row, so numbering never goes backwards across restarts even after every
update was acknowledged. Appending the final update of an attempt forgets that attempt in the same
transaction, so a crash can never leave an ended attempt to be re-attached. Each started attempt keeps its
backend's record (e.g. the local backend's process group); a journal written before that column existed is
migrated in place when opened, its attempts with an empty record. It does not decide what to send, sign
receipts, nor re-attach attempts (the runtime does).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime
from pathlib import Path

from agents.core.commands import Launch
from agents.core.model import JobState, JobUpdate
from agents.errors import ConfigError
from agents.journal.base import StartedAttempt

FILE_NAME = "journal.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS updates (
    sequence          INTEGER PRIMARY KEY,
    job_id            TEXT NOT NULL,
    epoch             INTEGER NOT NULL,
    state             TEXT NOT NULL,
    time              TEXT NOT NULL,
    exit_code         INTEGER NOT NULL,
    message           TEXT NOT NULL,
    devices           TEXT NOT NULL,
    lease_returned    INTEGER NOT NULL,
    receipt_record    BLOB NOT NULL,
    receipt_signature BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    job_id      TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    launch      TEXT NOT NULL,
    devices     TEXT NOT NULL,
    start_time  TEXT NOT NULL,
    backend     TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (job_id, epoch)
);
"""
# Columns added since the first schema, each with the statement that adds it to an older journal.
_MIGRATIONS = (("attempts", "backend", "ALTER TABLE attempts ADD COLUMN backend TEXT NOT NULL DEFAULT '{}'"),)
_RAISE = (
    "INSERT INTO counters (name, value) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)"
)


class SqliteJournal:
    """An UpdateJournal in one SQLite file; safe to reopen after a crash. One agent per file."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds every job's environment
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            _migrate(self._db)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the agent journal {path}: {exc}; check that state_dir is writable by the agent"
            ) from exc
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def in_directory(cls, state_dir: Path) -> SqliteJournal:
        return cls(state_dir / FILE_NAME)

    def _write(self, *statements: tuple[str, tuple[object, ...]]) -> None:
        """Run statements in one transaction; it is durable (synchronous=FULL) when this returns."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    self._db.execute(sql, params)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _counter(self, name: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def append(self, update: JobUpdate) -> None:
        last = self.last_sequence()
        if update.sequence <= last:
            raise ValueError(f"update sequence {update.sequence} is not above {last}")
        row = (
            update.sequence,
            update.job_id,
            update.epoch,
            update.state.value,
            update.time.isoformat(),
            update.exit_code,
            update.message,
            json.dumps(list(update.device_indices)),
            int(update.lease_returned),
            update.receipt_record,
            update.receipt_signature,
        )
        statements: list[tuple[str, tuple[object, ...]]] = [
            ("INSERT INTO updates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row),
            (_RAISE, ("last_sequence", update.sequence)),
        ]
        if update.state.is_final:
            statements.append(("DELETE FROM attempts WHERE job_id = ? AND epoch = ?", (update.job_id, update.epoch)))
        self._write(*statements)

    def pending(self, after: int = 0) -> list[JobUpdate]:
        with self._lock:
            rows = self._db.execute(
                "SELECT sequence, job_id, epoch, state, time, exit_code, message, devices, lease_returned, "
                "receipt_record, receipt_signature FROM updates WHERE sequence > ? ORDER BY sequence",
                (after,),
            ).fetchall()
        return [_update(*row) for row in rows]

    def acknowledge(self, upto: int) -> None:
        self._write(("DELETE FROM updates WHERE sequence <= ?", (upto,)))

    def discard(self, sequence: int) -> None:
        self._write(("DELETE FROM updates WHERE sequence = ?", (sequence,)))

    def last_sequence(self) -> int:
        return self._counter("last_sequence")

    def cursor(self) -> int:
        return self._counter("cursor")

    def advance_cursor(self, sequence: int) -> None:
        self._write((_RAISE, ("cursor", sequence)))

    def record_started(self, attempt: StartedAttempt) -> None:
        self._write(
            (
                "INSERT OR REPLACE INTO attempts (job_id, epoch, launch, devices, start_time, backend) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    attempt.launch.job_id,
                    attempt.launch.epoch,
                    json.dumps(_launch_to_json(attempt.launch)),
                    json.dumps(list(attempt.devices)),
                    attempt.start_time.isoformat(),
                    json.dumps(dict(attempt.backend_record)),
                ),
            )
        )

    def record_ended(self, job_id: str, epoch: int) -> None:
        self._write(("DELETE FROM attempts WHERE job_id = ? AND epoch = ?", (job_id, epoch)))

    def started(self) -> list[StartedAttempt]:
        with self._lock:
            rows = self._db.execute(
                "SELECT launch, devices, start_time, backend FROM attempts ORDER BY start_time, job_id"
            ).fetchall()
        return [
            StartedAttempt(
                _launch_from_json(json.loads(launch)),
                tuple(json.loads(devices)),
                datetime.fromisoformat(t),
                _record(json.loads(backend)),
            )
            for launch, devices, t, backend in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _migrate(db: sqlite3.Connection) -> None:
    """Add the columns an older journal lacks; a journal that has them is left as it is."""
    for table, column, statement in _MIGRATIONS:
        if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(statement)


def _record(value: object) -> dict[str, object]:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _update(
    sequence: int,
    job_id: str,
    epoch: int,
    state: str,
    time: str,
    exit_code: int,
    message: str,
    devices: str,
    lease_returned: int,
    record: bytes,
    signature: bytes,
) -> JobUpdate:
    return JobUpdate(
        job_id=job_id,
        epoch=epoch,
        state=JobState(state),
        sequence=sequence,
        time=datetime.fromisoformat(time),
        exit_code=exit_code,
        message=message,
        device_indices=tuple(json.loads(devices)),
        lease_returned=bool(lease_returned),
        receipt_record=bytes(record),
        receipt_signature=bytes(signature),
    )


def _launch_to_json(launch: Launch) -> dict[str, object]:
    return {
        "job_id": launch.job_id,
        "epoch": launch.epoch,
        "attempt": launch.attempt,
        "accelerator_class": launch.accelerator_class,
        "cards": launch.cards,
        "command": list(launch.command),
        "stack": launch.stack,
        "image": launch.image,
        "tenant": launch.tenant,
        "project": launch.project,
        "max_runtime_s": launch.max_runtime_s,
        "env": dict(launch.env),
        "labels": dict(launch.labels),
    }


def _launch_from_json(data: dict[str, object]) -> Launch:
    return Launch(
        job_id=str(data["job_id"]),
        epoch=int(str(data["epoch"])),
        attempt=int(str(data["attempt"])),
        accelerator_class=str(data["accelerator_class"]),
        cards=int(str(data["cards"])),
        command=tuple(str(c) for c in _list(data["command"])),
        stack=str(data["stack"]),
        image=str(data["image"]),
        tenant=str(data["tenant"]),
        project=str(data["project"]),
        max_runtime_s=float(str(data["max_runtime_s"])),
        env=_strings(data["env"]),
        labels=_strings(data["labels"]),
    )


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def _strings(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}
