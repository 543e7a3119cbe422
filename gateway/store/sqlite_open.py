"""Opening a SQLite store file safely: one gateway per file, a damaged file refused, a disk error named.

Owns: the exclusive lock that a writing process holds on `<db>.lock` for as long as its store is open (the
holder's pid written in it, for the refusal message); the checks an existing file passes before the gateway
trusts it (not empty, a SQLite header, `PRAGMA quick_check`, fedgate's application id, a schema version this
code knows, writable); creating a new database atomically, so that a file at the path is always one that
fedgate wrote whole and marked; bringing a file to the latest schema (the migrations above its
`PRAGMA user_version`, in one write transaction, then the new version recorded there); and `store_error`, the one
translation of SQLite's error codes into the `StoreError` family. It does not know the tables (the migrations
are given by `gateway.store.sqlite`, from `gateway.store.sqlite_schema`) and does not run queries for the gateway.

Why a lock file and not SQLite's own `locking_mode=EXCLUSIVE`: in WAL mode the exclusive mode shuts out every
other connection, readers included, so `fedgate admin audit verify --store` could not look at the file of a
running gateway. An `flock` on a file beside the database keeps writers to one process while readers (which
open with `read_only=True`, take no lock and never write) still work. The kernel drops the lock when the
process dies, however it dies, so a kill -9 leaves nothing to clean up.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator, Sequence

from fedgate.common.reasons import ReasonCode
from gateway.errors import StoreError, StoreFull, StoreRefused, StoreUnavailable

log = logging.getLogger("fedgate.gateway")

APPLICATION_ID = 0x66656467
"""`PRAGMA application_id` of every database fedgate creates ("fedg"): a file without it is not ours."""
SQLITE_HEADER = b"SQLite format 3\x00"

# Primary SQLite result codes (the low byte of an extended code).
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _PROTOCOL, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 15, 26
_PERM, _NOLFS = 3, 22
_UNAVAILABLE = frozenset({_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _CANTOPEN, _PROTOCOL, _NOTADB, _PERM, _NOLFS})


class StoreLock:
    """An exclusive `flock` on `<db>.lock`, held from open to close of a writing store."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path

    @classmethod
    def acquire(cls, db_path: str) -> StoreLock:
        path = db_path + ".lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _os_refusal(exc, db_path, f"cannot create its lock file {path}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise StoreRefused(
                f"the store {db_path} is in use by another gateway ({who} holds {path}); two gateways on one "
                "SQLite file would both dispatch every job. Stop the other gateway first, or give this one a store "
                "of its own (`store:` in its config); several gateways on one federation need PostgreSQL.",
                reason=ReasonCode.STORE_IN_USE,
                metadata={"path": db_path, "holder_pid": str(holder or "")},
            ) from None
        try:  # the pid is for the message a second gateway prints; a full disk must not stop the holder here
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass
        return cls(fd, path)

    def release(self) -> None:
        # The file stays: unlinking it would let a third process lock a new inode while a second one waits on
        # the old. The kernel releases the lock with the descriptor.
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _read_pid(fd: int) -> int:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


def plain_path(path: str) -> str:
    """`//x/y` (from `sqlite:///` + an absolute path) as `/x/y`: one file, named plainly in messages."""
    return "/" + path.lstrip("/") if path.startswith("//") else path


def open_database(
    path: str, migrations: Sequence[str], *, read_only: bool = False
) -> tuple[sqlite3.Connection, StoreLock | None]:
    """Open the fedgate database at `path`, creating it (schema and marks, atomically) when there is no file, and
    bring a writer's file to the latest schema. `migrations`: the scripts of the numbered migrations, version N
    being migrations[N - 1]; `PRAGMA user_version` holds how many a file has, so its latest is len(migrations).

    A writer takes the store lock first and keeps it until `StoreLock.release`; a reader (`read_only`) takes
    none, never creates nor changes the file, and refuses a missing one. Raises `StoreRefused` naming the file,
    what is wrong and what to do; never starts on a file that is empty, foreign, damaged or too new.
    """
    path = plain_path(path)
    lock = None if read_only else StoreLock.acquire(path)
    try:
        if not os.path.lexists(path):
            if read_only:
                raise StoreRefused(
                    f"there is no store at {path}: check the path (a read-only look never creates one)",
                    reason=ReasonCode.STORE_MISSING,
                    metadata={"path": path},
                )
            _create(path, migrations)
        _check_file(path)
        db = _connect(path, read_only)
        try:
            _check_contents(db, path, len(migrations), adopt=not read_only)
            if not read_only:
                _prepare(db, path, migrations)
        except BaseException:
            db.close()
            raise
    except sqlite3.Error as exc:
        if lock is not None:
            lock.release()
        raise _open_refusal(exc, path) from exc
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return db, lock


def _connect(path: str, read_only: bool) -> sqlite3.Connection:
    if read_only:
        uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
        return sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
    return sqlite3.connect(path, check_same_thread=False, isolation_level=None)


def _create(path: str, migrations: Sequence[str]) -> None:
    """Write a new, marked database beside `path` and link it into place: a crash leaves no file or a whole
    one, so a file that is there and unmarked was not created by this code."""
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f".{name}.new-{os.getpid()}")
    for leftover in (temporary, temporary + "-wal", temporary + "-shm", temporary + "-journal"):
        if os.path.lexists(leftover):
            os.unlink(leftover)
    try:
        db = sqlite3.connect(temporary, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            _migrate(db, migrations, 0)
        finally:
            db.close()  # the last connection checkpoints the WAL into the file and removes it
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(temporary, path)  # unlike rename, never replaces a file that appeared meanwhile
        os.unlink(temporary)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise _os_refusal(exc, path, "cannot create it") from exc
    except sqlite3.Error:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise
    log.info("created a new store at %s (schema version %d)", path, len(migrations))


def _check_file(path: str) -> None:
    try:
        if not os.path.isfile(path):
            raise _damaged(path, "is not a regular file")
        size = os.path.getsize(path)
        if size == 0:
            raise _damaged(
                path,
                "is empty (0 bytes). A store this gateway created is never empty, so the file was truncated or "
                "replaced, and starting on it would start an empty federation",
                extra="Only if this is a new federation with nothing to lose, delete the file and start again.",
            )
        with open(path, "rb") as file:
            header = file.read(100)
    except OSError as exc:
        raise _os_refusal(exc, path, "cannot read it") from exc
    if not header.startswith(SQLITE_HEADER):
        raise _damaged(path, "is not a SQLite database (its first bytes are not a SQLite header)")
    if len(header) < 100:
        raise _damaged(path, f"is cut short ({size} bytes, less than a SQLite header)")


def _check_contents(db: sqlite3.Connection, path: str, latest: int, *, adopt: bool) -> None:
    problems = [row[0] for row in db.execute("PRAGMA quick_check(5)").fetchall()]
    if problems != ["ok"]:
        raise _damaged(path, f"is corrupted (SQLite's quick_check: {'; '.join(map(str, problems))[:300]})")
    application_id = db.execute("PRAGMA application_id").fetchone()[0]
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if application_id == 0 and version == 0:
        # A store from before fedgate marked its files: adopt it if it has fedgate's tables.
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'").fetchone() is None:
            raise _damaged(path, "is a SQLite database without fedgate's mark or tables: not a fedgate store")
        if adopt:
            log.info("marking the store %s as a fedgate database (schema version %d)", path, latest)
        return
    if application_id != APPLICATION_ID:
        raise _damaged(path, f"belongs to another program (SQLite application id {application_id:#x})")
    if version > latest:
        raise StoreRefused(
            f"the store {path} has schema version {version}, written by a newer fedgate (this one knows up to "
            f"{latest}). Run the newer fedgate, or restore a backup taken before the upgrade.",
            reason=ReasonCode.STORE_TOO_NEW,
            metadata={"path": path, "version": str(version)},
        )


def _prepare(db: sqlite3.Connection, path: str, migrations: Sequence[str]) -> None:
    """WAL and durable commits, then the missing migrations and the marks in one write transaction (always
    written, even with nothing to migrate: this is also where a read-only file or directory is found, before the
    gateway accepts anything). A file without the mark (from before it) counts as version 0."""
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    found = db.execute("PRAGMA user_version").fetchone()[0]
    _migrate(db, migrations, found)
    if found < len(migrations):
        log.info("migrated the store %s from schema version %d to %d", path, found, len(migrations))


def _migrate(db: sqlite3.Connection, migrations: Sequence[str], found: int) -> None:
    """Apply migrations[found:] and write the marks, all in one write transaction: a failure (a full disk, a
    crash) leaves the file at its old version with none of them."""
    script = "\n".join(migrations[found:])
    try:
        db.executescript(
            f"BEGIN IMMEDIATE;\n{script}\nPRAGMA application_id = {APPLICATION_ID};\n"
            f"PRAGMA user_version = {len(migrations)};\nCOMMIT;"
        )
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _damaged(path: str, what: str, *, extra: str = "") -> StoreRefused:
    return StoreRefused(
        f"the store {path} {what}. The gateway will not start on it; restore the file from a backup."
        + (f" {extra}" if extra else ""),
        reason=ReasonCode.STORE_DAMAGED,
        metadata={"path": path},
    )


def _os_refusal(exc: OSError, path: str, doing: str) -> StoreRefused:
    if exc.errno == errno.ENOSPC:
        reason, fix = ReasonCode.STORE_FULL, "free space on its disk"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason, fix = ReasonCode.STORE_NOT_WRITABLE, "fix the permissions of the file and its directory, or the mount"
    elif exc.errno == errno.ENOENT:
        reason, fix = ReasonCode.STORE_NOT_WRITABLE, "create its directory, or correct `store:` in the config"
    else:
        reason, fix = ReasonCode.STORE_UNAVAILABLE, "check the disk"
    where = exc.filename or path
    return StoreRefused(
        f"the store {path}: {doing} ({os.strerror(exc.errno or 0)}: {where}); {fix}",
        reason=reason,
        metadata={"path": path},
    )


def _open_refusal(exc: sqlite3.Error, path: str) -> StoreRefused:
    code = _primary(exc)
    if code in (_CORRUPT, _NOTADB):
        return _damaged(path, f"is corrupted (SQLite: {exc})")
    if code in (_READONLY, _CANTOPEN, _PERM):
        return StoreRefused(
            f"the store {path} cannot be written (SQLite: {exc}): fix the permissions of the file, its "
            "directory (SQLite writes -wal and -shm files beside it) or the mount",
            reason=ReasonCode.STORE_NOT_WRITABLE,
            metadata={"path": path},
        )
    if code == _FULL:
        return StoreRefused(
            f"the store {path} cannot be written: its disk is full; free space on it",
            reason=ReasonCode.STORE_FULL,
            metadata={"path": path},
        )
    return StoreRefused(
        f"the store {path} cannot be opened (SQLite: {exc}); check the disk",
        reason=ReasonCode.STORE_UNAVAILABLE,
        metadata={"path": path},
    )


def _primary(exc: BaseException) -> int:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else -1


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def store_error(exc: BaseException) -> tuple[StoreError, BaseException] | None:
    """The `StoreError` for a SQLite error met while the store runs, with the error in the chain that caused
    it (for the log), or None for one that is a bug (bad SQL, a constraint) and must stay INTERNAL. The chain
    is searched: SQLite rolls a transaction back by itself on a full disk, so the ROLLBACK that follows fails
    too, and the disk is the cause worth reporting."""
    for link in _chain(exc):
        code = _primary(link)
        if code == _FULL:
            full = StoreFull(
                "the gateway's store is full: new work is refused until an operator frees space; "
                "reads go on and nothing acknowledged before is lost",
            )
            return full, link
        if code in _UNAVAILABLE:
            unavailable = StoreUnavailable(
                "the gateway cannot use its store now (see the gateway log); nothing acknowledged before is "
                "lost; retry later",
            )
            return unavailable, link
    return None
