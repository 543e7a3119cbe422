"""The journal of job updates the gateway has not yet acknowledged, the agent's resume cursor, and the
attempts that started here and have not ended.

Owns: the `UpdateJournal` protocol and its in-memory implementation. The journal is the agent's outbox:
every update goes in before it is sent, is re-sent after a reconnect until the gateway acknowledges it,
and only then leaves. It also keeps the highest sequence ever used (so numbering never goes backwards),
the highest gateway message processed (the resume cursor), and each started attempt (so a restarted agent
can re-attach it through its backend). `agents.journal.sqlite.SqliteJournal` is the durable implementation
`fedgate agent run` uses; `MemoryJournal` is for tests. It does not decide what to send or when (the
transport session does) nor assign sequences (the runtime does).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from agents.core.commands import Launch
from agents.core.model import JobUpdate


@dataclass(frozen=True)
class StartedAttempt:
    """An attempt the backend started: what a restarted agent needs to find it again and to sign its end."""

    launch: Launch
    """The launch as the gateway sent it (job, epoch, attempt, class, cards, run, tenant, project, ...)."""
    devices: tuple[int, ...]
    """Device indices of the pool the attempt holds."""
    start_time: datetime
    """When it started (aware UTC)."""
    backend_record: Mapping[str, object] = field(default_factory=dict)
    """What the backend needs to find it again (its `journal_record`, JSON-serialisable; empty if none)."""

    @property
    def key(self) -> tuple[str, int]:
        return (self.launch.job_id, self.launch.epoch)


class UpdateJournal(Protocol):
    """Unacknowledged job updates plus the two counters that make a reconnect lossless.

    Implementations MUST keep updates in sequence order, MUST reject a sequence not above
    `last_sequence()`, and a durable implementation MUST have persisted an update (and the cursor) before
    the call returns, because the agent may send it right after.
    """

    def append(self, update: JobUpdate) -> None:
        """Record a new update. Its sequence MUST be greater than `last_sequence()`."""
        ...

    def pending(self, after: int = 0) -> list[JobUpdate]:
        """Unacknowledged updates with sequence > `after`, oldest first."""
        ...

    def acknowledge(self, upto: int) -> None:
        """The gateway made every update with sequence <= `upto` durable: forget them."""
        ...

    def discard(self, sequence: int) -> None:
        """The gateway refused the update with this sequence for good: forget it (no-op if unknown)."""
        ...

    def last_sequence(self) -> int:
        """The highest sequence ever appended (0 if none), even if it has been acknowledged since."""
        ...

    def cursor(self) -> int:
        """The highest gateway message sequence the agent has processed (0 if none)."""
        ...

    def advance_cursor(self, sequence: int) -> None:
        """Raise the cursor to `sequence`; a lower value leaves it unchanged."""
        ...

    def record_started(self, attempt: StartedAttempt) -> None:
        """Remember a started attempt until `record_ended`; durable before it returns (durable journals)."""
        ...

    def record_ended(self, job_id: str, epoch: int) -> None:
        """Forget a started attempt (no-op if unknown). Appending a final update for it MAY do this too."""
        ...

    def started(self) -> list[StartedAttempt]:
        """Attempts recorded as started and not ended, oldest first."""
        ...


class MemoryJournal:
    """An UpdateJournal kept in memory: lossless across reconnects, lost when the agent process stops."""

    def __init__(self) -> None:
        self._updates: deque[JobUpdate] = deque()
        self._last_sequence = 0
        self._cursor = 0
        self._started: dict[tuple[str, int], StartedAttempt] = {}

    def append(self, update: JobUpdate) -> None:
        if update.sequence <= self._last_sequence:
            raise ValueError(f"update sequence {update.sequence} is not above {self._last_sequence}")
        self._updates.append(update)
        self._last_sequence = update.sequence

    def pending(self, after: int = 0) -> list[JobUpdate]:
        return [u for u in self._updates if u.sequence > after]

    def acknowledge(self, upto: int) -> None:
        while self._updates and self._updates[0].sequence <= upto:
            self._updates.popleft()

    def discard(self, sequence: int) -> None:
        self._updates = deque(u for u in self._updates if u.sequence != sequence)

    def last_sequence(self) -> int:
        return self._last_sequence

    def cursor(self) -> int:
        return self._cursor

    def advance_cursor(self, sequence: int) -> None:
        self._cursor = max(self._cursor, sequence)

    def record_started(self, attempt: StartedAttempt) -> None:
        self._started[attempt.key] = attempt

    def record_ended(self, job_id: str, epoch: int) -> None:
        self._started.pop((job_id, epoch), None)

    def started(self) -> list[StartedAttempt]:
        return list(self._started.values())
