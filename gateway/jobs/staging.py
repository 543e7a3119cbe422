"""A batch of job changes being prepared for one transaction: what they will make of each job before any is
durable.

Owns: the rows of one commit, planned in order (`plan_move` turns a state change into the job's next version
and its event), the version of each job they lead to (a second change of the same job in the batch starts
from the first one's result, never from the book's older version), the usage receipts they settle, the site
cursors they raise, and what to do once they are durable (commands to sites). Nothing here is durable,
remembered or announced: the job book writes a staging in one transaction and only then remembers its jobs,
so that a batch the store refuses leaves the book as it was. It never touches the store or the listeners.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from fedgate.common.reasons import ReasonCode
from gateway.jobs.model import ATTEMPT_ENDS, Job, JobEvent, JobState, Reason
from gateway.usage.receipts import SettledReceipt

Move = tuple[Job, JobState, str, str, tuple[str, int] | None, dict[str, object]]
"""One state change as `JobBook.transitions` takes it: (job, new state, message, site, site cursor, changes)."""

Row = tuple[Job, JobEvent, tuple[str, int] | None]
"""One job's new version, its event and the site cursor it raises, as `Store.save_transitions` takes them."""


def plan_move(move: Move, now: datetime) -> tuple[Job, JobEvent]:
    """The job's version after `move` at `now`, and its event (the event's sequence comes from the store)."""
    job, state, message, site, _, changes = move
    if state.terminal or state in ATTEMPT_ENDS:
        changes.setdefault("end_time", now)
    if state.terminal and state != JobState.REJECTED:  # the reasons it waited for no longer hold
        changes.setdefault("reasons", (Reason("site" if site else "dispatch", ReasonCode.JOB_ENDED, message, site),))
    new = job.evolve(state=state, update_time=now, **changes)
    return new, JobEvent(job.job_id, state, now, new.attempt, site, message)


class Staging:
    def __init__(self, find: Callable[[str], Job | None], now: datetime) -> None:
        self._find = find  # the book's view, for a job this staging has not changed
        self.now = now
        self.rows: list[Row] = []
        self.receipts: list[SettledReceipt] = []
        self.cursors: dict[str, int] = {}
        """Site cursors raised by this staging (with or without a transition), highest per site."""
        self._jobs: dict[str, Job] = {}
        self._durable: list[Callable[[], Any]] = []
        self.landed = False
        """Set by the book once the write returned (made durable or failed): it is not landed twice."""

    @property
    def empty(self) -> bool:
        return not (self.rows or self.receipts or self.cursors)

    def job(self, job_id: str) -> Job | None:
        """The job as this staging leaves it (the book's version when the staging has not changed it)."""
        return self._jobs.get(job_id) or self._find(job_id)

    def cursor(self, site: str, durable: int) -> int:
        """`site`'s update cursor once this staging is durable; `durable`: the cursor as the store holds it."""
        return max(durable, self.cursors.get(site, 0))

    def stage(self, moves: Sequence[Move], receipts: Sequence[SettledReceipt] = ()) -> list[Job]:
        """Plan `moves`, in order, with the `receipts` they settle; returns each job's new version."""
        updated = []
        for move in moves:
            new, event = plan_move(move, self.now)
            self.rows.append((new, event, move[4]))
            self._jobs[new.job_id] = new
            if move[4] is not None:
                self.raise_cursor(*move[4])
            updated.append(new)
        self.receipts.extend(receipts)
        return updated

    def raise_cursor(self, site: str, sequence: int) -> None:
        self.cursors[site] = max(self.cursors.get(site, 0), sequence)

    def when_durable(self, action: Callable[[], Any]) -> None:
        """Run `action` once the staging is durable and remembered (never when its write fails)."""
        self._durable.append(action)

    def run_durable_actions(self) -> None:
        for action in self._durable:
            action()
