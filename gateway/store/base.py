"""The store contract and its registry.

Owns: what the gateway needs to keep across restarts (jobs, their events, each site's update cursor and the
high mark of the gateway's message sequence to it) and the MUST-level rules every implementation follows. The
SQLite implementation is the embedded default; a PostgreSQL one follows the same contract and the same contract
tests. The leader lease (`LeaderLease`) lets several gateways share a PostgreSQL store: one leads, the others stand by.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from gateway.errors import ConfigError
from gateway.identity.join import JoinTokenRecord
from gateway.identity.revocation import Revocation
from gateway.jobs.model import Job, JobEvent, JobState
from gateway.reservations.model import Reservation
from gateway.store.receipts import ReceiptPage
from gateway.store.reservations import ReservationPage
from gateway.trust.audit import AuditEntry
from gateway.usage.receipts import SettledReceipt


@dataclass(frozen=True)
class JobPage:
    jobs: tuple[Job, ...]
    next_page_token: str


class Store(Protocol):
    def create_job(self, job: Job, event: JobEvent) -> tuple[Job, bool]:
        """Insert a job and its first event in one transaction and return (job, True).

        MUST be idempotent on (job.spec.tenant, job.request_id) when request_id is set: a second call returns
        the job stored by the first and False, and writes nothing. MUST be durable before it returns.
        """
        ...

    def create_jobs(self, batch: Sequence[tuple[Job, JobEvent]]) -> list[tuple[Job, bool]]:
        """`create_job` for many jobs in ONE transaction (group commit); results in the order given.

        MUST be all-or-nothing, and MAY be called from a thread other than the event loop's.
        """
        ...

    def get_job(self, job_id: str) -> Job | None: ...

    def job_by_request(self, tenant: str, request_id: str) -> Job | None:
        """The job `tenant` created with `request_id` (request ids are scoped to a tenant), or None."""
        ...

    def list_jobs(
        self,
        tenants: Collection[str] | None,
        project: str = "",
        states: Collection[JobState] = (),
        page_size: int = 100,
        page_token: str = "",
        or_projects: Collection[str] = (),
    ) -> JobPage:
        """Jobs in creation order. tenants=None means every tenant; `or_projects` adds the jobs of these
        (joint) projects whichever tenant submitted them. MUST list the jobs whose id is greater than
        `page_token`: the next page token is the last job id of the page, so that a caller may end a page early
        after any job it kept (`gateway.jobs.reads.within_bytes`). Clients never see it: the gateway seals it."""
        ...

    def save_transition(self, job: Job, event: JobEvent, site_cursor: tuple[str, int] | None = None) -> JobEvent:
        """Write the job's new state, its event and (optionally) the site's update cursor in one transaction.

        MUST be durable before it returns. Returns the event with its assigned sequence number.
        """
        ...

    def save_transitions(
        self,
        batch: Sequence[tuple[Job, JobEvent, tuple[str, int] | None]],
        receipts: Sequence[SettledReceipt] = (),
        cursors: Sequence[tuple[str, int]] = (),
    ) -> list[JobEvent]:
        """`save_transition` for many jobs in ONE transaction (one fsync), all or nothing, in order, together
        with the usage `receipts` those transitions settle (the batch MAY be empty: a receipt arriving after its
        job ended) and the site `cursors` (site, sequence) raised without a transition, as `advance_site_cursor`
        does. MUST keep at most one receipt per (job_id, epoch, site): a repeated one is ignored. MAY be called
        from a thread other than the event loop's."""
        ...

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
        """Settled receipts of attempts that ended in [start, end), oldest settlement first; tenants=None means
        every tenant, `or_projects` adds these projects' receipts whichever tenant ran them. page_token is
        opaque to callers (a decimal string here; anything else is refused before the call)."""
        ...

    def events(self, job_id: str) -> tuple[JobEvent, ...]: ...

    def usage_between(self, start: datetime, end: datetime) -> list[tuple[str, str, str, float, int]]:
        """(tenant, project, class, card-hours, attempts) of attempts that ended in [start, end), preempted
        attempts included (recorded when the PREEMPTED transition is saved)."""
        ...

    def card_hours_since(self, since: datetime) -> dict[tuple[str, str], float]:
        """Card-hours of attempts that ended at or after `since`, per (tenant, project). Attempts are recorded
        when their job's terminal transition is saved (same transaction)."""
        ...

    def active_jobs(self) -> tuple[Job, ...]:
        """Every job not in a terminal state, oldest first (what a restarted gateway resumes)."""
        ...

    def site_cursor(self, site: str) -> int:
        """The highest update sequence from `site` made durable; 0 for a site never heard from."""
        ...

    def advance_site_cursor(self, site: str, sequence: int) -> None:
        """Raise `site`'s update cursor to `sequence` (an update acknowledged without a transition: a replay, or
        news about a job the gateway already ended). MUST only move the cursor forward (a lower value changes
        nothing) and MUST be durable before it returns, so that a Welcome never reports less than was acked."""
        ...

    def reserve_site_messages(self, site: str, count: int) -> int:
        """Reserve `count` (>= 1) sequence numbers for the gateway's messages to `site` and return the first;
        the block is [first, first + count). MUST return a first number above every number any earlier call
        for this site returned (across restarts, and across gateways on one database: atomic), starting at 1,
        and MUST be durable before it returns. Numbers reserved and never sent are simply skipped."""
        ...

    # ---- advance reservations --------------------------------------------------------------------------
    def create_reservation(self, reservation: Reservation) -> tuple[Reservation, bool]:
        """Insert a reservation and return (it, True). MUST be idempotent on (tenant, request_id) when
        request_id is set: a second call returns the stored one and False. MUST be durable before it returns."""
        ...

    def save_reservation(self, reservation: Reservation) -> None:
        """Replace a reservation's state and body. MUST be durable before it returns."""
        ...

    def get_reservation(self, reservation_id: str) -> Reservation | None: ...

    def reservation_by_request(self, tenant: str, request_id: str) -> Reservation | None: ...

    def list_reservations(
        self,
        tenants: Collection[str] | None,
        project: str = "",
        page_size: int = 100,
        page_token: str = "",
        or_projects: Collection[str] = (),
    ) -> ReservationPage:
        """Reservations in creation order, scoped like `list_jobs`."""
        ...

    def live_reservations(self) -> tuple[Reservation, ...]:
        """Every PENDING, CONFIRMED or ACTIVE reservation, oldest first (what a restarted gateway resumes)."""
        ...

    # ---- the trust layer ------------------------------------------------------------------------------
    def add_join_token(self, record: JoinTokenRecord) -> None: ...

    def join_token(self, token_id: str) -> JoinTokenRecord | None: ...

    def consume_join_token(self, token_id: str, now: datetime) -> bool:
        """Mark a join token used. MUST be atomic: of two racing callers exactly one gets True."""
        ...

    def record_token_use(self, token_id: str, now: datetime) -> bool:
        """Record a single-use token's use. MUST be atomic; True only for the first use ever."""
        ...

    def add_revocation(self, revocation: Revocation) -> None: ...

    def revocations(self) -> tuple[Revocation, ...]: ...

    def append_audit(self, entry: AuditEntry) -> None:
        """Append one audit entry. MUST refuse a sequence number that already exists (append-only), raising
        `AlreadyExists`."""
        ...

    def audit_entries(self, after: int = 0, limit: int = 1000) -> tuple[AuditEntry, ...]: ...

    def last_audit(self) -> AuditEntry | None: ...

    def close(self) -> None: ...


STANDBY = -1
"""The fence of a standby gateway's store: no epoch is ever -1, so every write is refused (NotLeader)."""


@dataclass(frozen=True)
class LeaderRecord:
    """The leader lease as the database has it now."""

    epoch: int  # bumped at every takeover; the fence every write of the leader carries
    holder: str  # the gateway process that holds it ("" before the first leader)
    address: str  # where clients reach that leader (host:port)
    live: bool  # not expired nor released
    remaining_s: float  # seconds until it expires, by the database's clock


class LeaderLease(Protocol):
    """The lease that makes one of several gateways on a shared store the leader. Blocking calls."""

    def current(self) -> LeaderRecord: ...

    def acquire(self, holder: str, address: str, lease: timedelta) -> LeaderRecord:
        """Take the lease unless another holder's is live; returns the row afterwards (won: holder is ours)."""
        ...

    def renew(self, epoch: int, holder: str, lease: timedelta) -> bool:
        """Extend our lease; False once another gateway has taken it (our epoch is over)."""
        ...

    def release(self, epoch: int, holder: str) -> None: ...

    def close(self) -> None: ...


def open_leader_lease(url: str) -> LeaderLease | None:
    """The leader lease of a shared store (PostgreSQL), or None for SQLite, where the file's lock already
    makes the one gateway on it the leader. Open the store first: it migrates the schema."""
    if url.startswith(("postgresql://", "postgres://")):
        from gateway.store.postgres.leader import PgLeaderLease

        return PgLeaderLease(url)
    return None


def resolve_store_url(url: str, base: Path) -> str:
    """The one meaning of a store URL: `sqlite:///RELATIVE` (three slashes) is a path relative to `base`,
    `sqlite:////ABSOLUTE` (four) an absolute one, `sqlite:///:memory:` no file; other stores are unchanged.
    The command line resolves against the current directory, a gateway config against the config's folder."""
    path = sqlite_path(url)
    if path is None or path == ":memory:" or Path(path).is_absolute():
        return url
    return f"sqlite:///{base / path}"


def sqlite_path(url: str) -> str | None:
    """The file path of a `sqlite:` URL as written (None for another store): what follows `sqlite:///`."""
    if not url.startswith("sqlite:"):
        return None
    return url.removeprefix("sqlite:").removeprefix("//").removeprefix("/") if url != "sqlite:" else ""


def open_store(url: str, *, read_only: bool = False, fence: int | None = None) -> Store:
    """Open a store by URL: `sqlite:///path/to/db` (relative to the current directory; see
    `resolve_store_url`), `sqlite:////abs/path/db`, `sqlite:///:memory:`, or `postgresql://user@host:port/dbname`
    (any libpq URL; its schema is migrated on open).

    A writing SQLite store is held by one process: a second one is refused with `StoreRefused` (STORE_IN_USE),
    as is a damaged, foreign or too new file (the message names the file and the fix). `read_only` is for
    offline tools (an audit check) beside a running gateway: no lock, no write, no file or schema created, and
    a store that does not exist is refused (STORE_MISSING), on both engines. On PostgreSQL there is no lock to
    take; `fence` is the leader's epoch that every write must still hold (`STANDBY`: no write at all), see
    `open_leader_lease`. SQLite takes no fence: its lock is its leadership."""
    path = sqlite_path(url)
    if path is not None:
        from gateway.store.sqlite import SqliteStore

        if not path:
            raise ConfigError("a sqlite store URL names a file: sqlite:///RELATIVE or sqlite:////ABSOLUTE")
        return SqliteStore(path if path == ":memory:" else str(Path(path).absolute()), read_only=read_only)
    if url.startswith(("postgresql://", "postgres://")):
        from gateway.store.postgres import PostgresStore

        store = PostgresStore(url, read_only=read_only)
        store.fence(fence)
        return store
    scheme = url.split("://", 1)[0] if "://" in url else url
    raise ConfigError(
        f"unknown store {scheme!r}: valid stores are sqlite:///PATH (embedded default) and "
        "postgresql://USER@HOST:PORT/DBNAME",
        reason="UNKNOWN_STORE",
    )
