"""The attempts an agent knows about, keyed by (job_id, epoch), and the highest epoch seen per job.

Owns: the bookkeeping that makes launches idempotent and stale epochs detectable: live attempts, a
bounded memory of ended ones (so a repeated Launch re-reports instead of running twice), and each job's
highest epoch, and the JobUpdate that reports an attempt's state (`update_of`). It does not start or stop
anything (the runtime does, through a backend) and does not number or journal updates (the runtime does).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from agents.backends.base import JobHandle
from agents.core.commands import Launch
from agents.core.model import JobState, JobUpdate

# Enough to cover any resend window the gateway could have; old entries only matter for a Launch the
# gateway repeats long after the attempt ended, which it has no reason to do.
ENDED_MEMORY = 10_000
EPOCH_MEMORY = 100_000


@dataclass(frozen=True)
class StopRequest:
    """Why the agent is stopping an attempt, and what to report once it is gone."""

    state: JobState
    message: str


@dataclass
class Attempt:
    """One attempt of one job at this site."""

    launch: Launch
    devices: tuple[int, ...] = ()
    handle: JobHandle | None = None
    """None when the attempt was refused before it started."""
    state: JobState = JobState.RUNNING
    exit_code: int = 0
    message: str = ""
    stop: StopRequest | None = None
    """Set once the agent decided to stop it (cancel, preempt, max runtime, shutdown)."""
    lease_returned: bool = False
    """Refused for a reason of the site's own, not the job's: the gateway queues the job again."""
    started_at: datetime | None = None
    """When the backend started it; None for an attempt refused before it started (it gets no receipt)."""
    receipt: tuple[bytes, bytes] | None = None
    """The signed usage receipt (record bytes, signature), made once when the started attempt ended."""

    @property
    def key(self) -> tuple[str, int]:
        return (self.launch.job_id, self.launch.epoch)


def update_of(attempt: Attempt, sequence: int, time: datetime) -> JobUpdate:
    """The update reporting `attempt` as it is now (with its receipt, if one was made), numbered `sequence`."""
    return JobUpdate(
        job_id=attempt.launch.job_id,
        epoch=attempt.launch.epoch,
        state=attempt.state,
        sequence=sequence,
        time=time,
        exit_code=attempt.exit_code,
        message=attempt.message,
        device_indices=attempt.devices,
        lease_returned=attempt.lease_returned,
        receipt_record=attempt.receipt[0] if attempt.receipt else b"",
        receipt_signature=attempt.receipt[1] if attempt.receipt else b"",
    )


class AttemptTable:
    """Live and recently ended attempts, plus the highest epoch seen per job."""

    def __init__(self, *, ended_memory: int = ENDED_MEMORY, epoch_memory: int = EPOCH_MEMORY) -> None:
        self._live: dict[tuple[str, int], Attempt] = {}
        self._ended: OrderedDict[tuple[str, int], Attempt] = OrderedDict()
        self._epochs: OrderedDict[str, int] = OrderedDict()
        self._ended_memory = ended_memory
        self._epoch_memory = epoch_memory

    def find(self, job_id: str, epoch: int) -> Attempt | None:
        """The attempt (live or ended) for exactly this job and epoch."""
        key = (job_id, epoch)
        return self._live.get(key) or self._ended.get(key)

    def live(self, job_id: str, epoch: int) -> Attempt | None:
        return self._live.get((job_id, epoch))

    def all_live(self) -> list[Attempt]:
        return list(self._live.values())

    def live_of_job(self, job_id: str) -> list[Attempt]:
        return [a for (job, _), a in self._live.items() if job == job_id]

    def highest_epoch(self, job_id: str) -> int | None:
        return self._epochs.get(job_id)

    def note_epoch(self, job_id: str, epoch: int) -> None:
        self._epochs[job_id] = max(epoch, self._epochs.get(job_id, epoch))
        self._epochs.move_to_end(job_id)
        while len(self._epochs) > self._epoch_memory:
            self._epochs.popitem(last=False)

    def add_live(self, attempt: Attempt) -> None:
        self._live[attempt.key] = attempt

    def add_ended(self, attempt: Attempt) -> None:
        """Record an attempt that has ended (or never started); it leaves the live set."""
        self._live.pop(attempt.key, None)
        self._ended[attempt.key] = attempt
        self._ended.move_to_end(attempt.key)
        while len(self._ended) > self._ended_memory:
            self._ended.popitem(last=False)
