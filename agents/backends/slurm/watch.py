"""Following every Slurm job of one backend with one poll loop, not one subprocess per job per tick.

Owns: the set of followed Slurm job ids with a future per job that resolves to its `ExitStatus`, the last
state seen of each, and the loop that per tick runs one `squeue` for all of them and, for those that ended
or vanished, one `sacct` (falling back to `sacct --completion` where accounting is off, and to
`scontrol show job` for records sacct does not have yet). A job that neither squeue nor the end records know
for several ticks is lost: its future fails. The loop runs as the agent's supervised task (`run`), or on
demand while jobs are followed when nothing owns it. Also finding jobs by name (for adoption) in the same
places. It does not start or stop jobs (`agents.backends.slurm.backend`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Collection

from agents.backends.base import ExitStatus
from agents.backends.slurm.commands import SlurmCommands
from agents.backends.slurm.parse import (
    SACCT_FIELDS,
    SQUEUE_FORMAT,
    JobRow,
    exit_status,
    parse_sacct,
    parse_scontrol_job,
    parse_squeue,
)
from agents.errors import BackendError
from fedgate.common.supervise import Cycles

log = logging.getLogger(__name__)

ADOPT_LOOKBACK = "now-7days"
"""How far back a search by job name reads accounting (sacct's default is only since midnight)."""
LOST_AFTER_TICKS = 5
"""Ticks a job may be missing from squeue and every end record before it counts as lost."""


class EndRecords(enum.Enum):
    """Where ended jobs' exit codes come from on this cluster, found on first use."""

    ACCOUNTING = "sacct"
    """slurmdbd accounting: `sacct`."""
    COMPLETION = "sacct --completion"
    """No accounting, but a job completion plugin (jobcomp/filetxt): `sacct --completion`."""
    CONTROLLER = "scontrol show job"
    """Neither: only the controller's memory (jobs vanish from it MinJobAge seconds after ending)."""


class JobWatch:
    """One poll loop over all followed jobs. All methods must be called on the agent's event loop."""

    def __init__(self, commands: SlurmCommands, interval_s: float) -> None:
        self._commands = commands
        self._interval_s = interval_s
        self._ends: dict[str, asyncio.Future[ExitStatus]] = {}
        self._states: dict[str, str] = {}
        self._missing: dict[str, int] = {}
        self._records: EndRecords | None = None
        self._wake = asyncio.Event()
        self._has_work = asyncio.Event()
        self._owned = False
        self._task: asyncio.Task[None] | None = None
        self.ticks = Cycles(log, "Slurm poll")
        """Polls run (completed, failed); tests wait on it instead of sleeping."""

    def follow(self, slurm_id: str) -> asyncio.Future[ExitStatus]:
        """The future of `slurm_id`'s end; following the same job twice gives the same future."""
        future = self._ends.get(slurm_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._ends[slurm_id] = future
            self._missing[slurm_id] = 0
            self._has_work.set()
        if not self._owned and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._poll_while_pending(), name="slurm-watch")
        return future

    def state(self, slurm_id: str) -> str:
        """The last state squeue showed for the job (PENDING, RUNNING, ...); empty before the first poll."""
        return self._states.get(slurm_id, "")

    def poke(self) -> None:
        """Poll now instead of at the next tick (after a cancel, to notice the end sooner)."""
        self._wake.set()

    async def run(self) -> None:
        """The poll loop for as long as the agent runs, as the task its supervisor owns: idle while no job is
        followed, a tick per interval (or poke) while some are. A failing tick is logged and counted in
        `ticks` and the next one runs; it returns only when cancelled. Without an owner, `follow` starts a
        loop of its own that ends when no job is left."""
        self._owned = True
        await self.close()  # a loop started on demand before the owner took over
        while True:
            if not self._pending():
                self._has_work.clear()
                await self._has_work.wait()
            await self._tick_then_wait()

    async def close(self) -> None:
        """Stop the loop started on demand. Futures of unfinished jobs stay unresolved: their jobs keep running in
        Slurm."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _poll_while_pending(self) -> None:
        while self._pending():
            await self._tick_then_wait()

    async def _tick_then_wait(self) -> None:
        self._wake.clear()  # before the tick: a poke during it asks for the next one at once
        await self.ticks.run_async(self._tick)  # a parsing bug must not leave every job unwatched for good
        if self._pending():
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: 3.11's wait_for can lose a cancel
                async with asyncio.timeout(self._interval_s):
                    await self._wake.wait()

    async def _tick(self) -> None:
        try:
            await self.poll_once()
        except BackendError as exc:  # slurmctld down or slow: keep the jobs, ask again next tick
            log.warning("could not poll Slurm for job states: %s", exc.message)

    def _pending(self) -> list[str]:
        return [slurm_id for slurm_id, future in self._ends.items() if not future.done()]

    async def poll_once(self) -> None:
        """One tick: squeue for all pending jobs, then end records for those that ended or vanished."""
        pending = self._pending()
        if not pending:
            return
        queued = {row.slurm_id: row for row in await self._squeue(pending)}
        for slurm_id, queued_row in queued.items():
            self._states[slurm_id] = queued_row.state
            self._missing[slurm_id] = 0
        finished = [i for i in pending if i not in queued or queued[i].ended]
        if not finished:
            return
        ended = await self._end_records(finished, in_controller=[i for i in finished if i in queued])
        for slurm_id in finished:
            record = ended.get(slurm_id)
            if record is not None and record.ended:
                self._resolve(slurm_id, record)
            elif slurm_id not in queued:
                self._missing[slurm_id] += 1
                if self._missing[slurm_id] >= LOST_AFTER_TICKS:
                    self._lose(slurm_id)

    async def jobs_named(self, name: str, partition: str) -> list[JobRow]:
        """Every job called `name` that the controller (in `partition`) or the end records still know."""
        result = await self._commands.run(
            "squeue",
            "--noheader",
            "--states=all",
            f"--partition={partition}",
            f"--name={name}",
            f"--format={SQUEUE_FORMAT}",
        )
        if not result.ok:
            raise BackendError(f"squeue failed: {result.problem()}")
        rows = [row for row in parse_squeue(result.stdout) if row.name == name]
        if rows:
            return rows
        # Gone from the controller: accounting may still remember it (sacct --completion ignores --name).
        records = await self.record_source()
        if records is EndRecords.CONTROLLER:
            return []
        flags = ["--completion"] if records is EndRecords.COMPLETION else []
        result = await self._commands.run(
            "sacct",
            *flags,
            "--noheader",
            "--parsable2",
            "--allocations",
            f"--starttime={ADOPT_LOOKBACK}",
            f"--name={name}",
            f"--format={SACCT_FIELDS}",
        )
        if not result.ok:
            raise BackendError(f"sacct failed: {result.problem()}")
        return [row for row in parse_sacct(result.stdout) if row.name == name]

    async def _squeue(self, slurm_ids: list[str]) -> list[JobRow]:
        result = await self._commands.run(
            "squeue", "--noheader", "--states=all", f"--jobs={','.join(slurm_ids)}", f"--format={SQUEUE_FORMAT}"
        )
        if result.ok:
            return parse_squeue(result.stdout)
        if "invalid job id" in result.stderr.lower():
            return []  # squeue refuses a list in which it knows no job at all: every one has left it
        raise BackendError(f"squeue failed: {result.problem()}")

    async def _end_records(self, slurm_ids: list[str], in_controller: Collection[str]) -> dict[str, JobRow]:
        rows: dict[str, JobRow] = {}
        records = await self.record_source()
        if records is not EndRecords.CONTROLLER:
            flags = ["--completion"] if records is EndRecords.COMPLETION else []
            result = await self._commands.run(
                "sacct",
                *flags,
                "--noheader",
                "--parsable2",
                "--allocations",
                f"--jobs={','.join(slurm_ids)}",
                f"--format={SACCT_FIELDS}",
            )
            if not result.ok:
                raise BackendError(f"sacct failed: {result.problem()}")
            rows = {row.slurm_id: row for row in parse_sacct(result.stdout) if row.slurm_id in slurm_ids}
        # Accounting lags the controller a little; what the controller still holds it can say itself.
        for slurm_id in in_controller:
            if slurm_id not in rows or not rows[slurm_id].ended:
                result = await self._commands.run("scontrol", "--oneliner", "show", "job", slurm_id)
                row = parse_scontrol_job(result.stdout) if result.ok else None
                if row is not None:
                    rows[slurm_id] = row
        return rows

    async def record_source(self) -> EndRecords:
        """Where this cluster keeps ended jobs' records; found with a probe on first use, then cached."""
        if self._records is None:
            self._records = await self._detect_records()
            log.info("reading ended Slurm jobs with `%s`", self._records.value)
        return self._records

    async def _detect_records(self) -> EndRecords:
        for records, flags in ((EndRecords.ACCOUNTING, []), (EndRecords.COMPLETION, ["--completion"])):
            probe = await self._commands.run("sacct", *flags, "--noheader", "--parsable2", "--jobs=0", "--format=JobID")
            if probe.ok:
                return records
        return EndRecords.CONTROLLER

    def _resolve(self, slurm_id: str, row: JobRow) -> None:
        self._states[slurm_id] = row.state
        future = self._ends[slurm_id]
        if not future.done():
            future.set_result(exit_status(row))

    def _lose(self, slurm_id: str) -> None:
        future = self._ends[slurm_id]
        if not future.done():
            future.set_exception(
                BackendError(
                    f"Slurm job {slurm_id} is gone from squeue and has no end record; it ended while the agent "
                    "could not see it (enable accounting with slurmdbd or jobcomp to keep its exit code)"
                )
            )
