"""The slurm backend's poll loop over a scripted fake of Slurm's commands: where end records come from on
clusters without accounting, and what happens to a job that Slurm forgets."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import pytest

from agents.backends.base import ExitStatus
from agents.backends.slurm.commands import CommandResult
from agents.backends.slurm.watch import LOST_AFTER_TICKS, EndRecords, JobWatch
from agents.errors import BackendError
from tests.waiting import eventually_async

DISABLED = "Slurm accounting storage is disabled\n"


@dataclass
class FakeSlurm:
    """Answers squeue/sacct/scontrol from tables a test fills in; counts calls like SlurmCommands."""

    queue: dict[str, str] = field(default_factory=dict)
    """slurm id -> state shown by squeue; absent = squeue no longer knows it."""
    controller: dict[str, str] = field(default_factory=dict)
    """slurm id -> `JobState=... ExitCode=...` that scontrol still holds."""
    accounting: bool = False
    completion: bool = False
    calls: Counter[str] = field(default_factory=Counter)
    asked: list[list[str]] = field(default_factory=list)
    """The job ids of each squeue call."""

    async def run(self, program: str, *args: str) -> CommandResult:
        self.calls[program] += 1
        argv = (program, *args)
        if program == "squeue":
            wanted = next(a for a in args if a.startswith("--jobs=")).split("=", 1)[1].split(",")
            self.asked.append(wanted)
            known = [i for i in wanted if i in self.queue]
            if not known:
                return CommandResult(argv, 1, "", "slurm_load_jobs error: Invalid job id specified\n")
            return CommandResult(argv, 0, "".join(f"{i}|fedgate.j.{i}|{self.queue[i]}\n" for i in known), "")
        if program == "sacct":
            works = self.completion if "--completion" in args else self.accounting
            return CommandResult(argv, 0, "", "") if works else CommandResult(argv, 1, "", DISABLED)
        if program == "scontrol":
            slurm_id = args[-1]
            if slurm_id not in self.controller:
                return CommandResult(argv, 1, "", "slurm_load_jobs error: Invalid job id specified\n")
            return CommandResult(argv, 0, f"JobId={slurm_id} JobName=fedgate.j.1 {self.controller[slurm_id]}\n", "")
        raise AssertionError(f"unexpected command {argv}")


def watch_over(slurm: FakeSlurm) -> JobWatch:
    return JobWatch(slurm, interval_s=0.01)  # type: ignore[arg-type]


async def ticks(slurm: FakeSlurm, count: int) -> None:
    """Wait until the watch has polled squeue `count` times (a dead poll loop fails the test)."""
    await eventually_async(lambda: slurm.calls["squeue"] >= count, what=f"{count} squeue polls")


async def test_without_accounting_the_controller_gives_the_exit_code() -> None:
    slurm = FakeSlurm(queue={"7": "RUNNING"})
    watch = watch_over(slurm)
    ended = watch.follow("7")
    await ticks(slurm, 3)
    assert not ended.done() and watch.state("7") == "RUNNING"
    slurm.queue["7"] = "FAILED"
    slurm.controller["7"] = "JobState=FAILED Reason=NonZeroExitCode ExitCode=3:0"
    assert await asyncio.wait_for(ended, 5) == ExitStatus(exit_code=3)
    assert await watch.record_source() is EndRecords.CONTROLLER
    await watch.close()


async def test_a_job_slurm_forgets_without_a_record_is_lost_after_some_ticks() -> None:
    slurm = FakeSlurm(queue={"8": "RUNNING"}, completion=True)
    watch = watch_over(slurm)
    ended = watch.follow("8")
    await ticks(slurm, 1)  # seen RUNNING
    del slurm.queue["8"]  # purged from the controller, and no completion record either
    with pytest.raises(BackendError) as lost:
        await asyncio.wait_for(ended, 5)
    assert "gone from squeue" in lost.value.message
    assert slurm.calls["squeue"] >= LOST_AFTER_TICKS
    await watch.close()


async def test_one_squeue_per_tick_serves_every_followed_job() -> None:
    slurm = FakeSlurm(queue={"1": "RUNNING", "2": "PENDING", "3": "RUNNING"})
    watch = watch_over(slurm)
    futures = [watch.follow(i) for i in ("1", "2", "3")]
    assert watch.follow("2") is futures[1], "following twice gives the same future"
    await ticks(slurm, 3)
    assert slurm.asked and all(sorted(ids) == ["1", "2", "3"] for ids in slurm.asked), "one call asks for all"
    assert slurm.calls["scontrol"] == 0 and slurm.calls["sacct"] == 0, "nothing ended: no end records read"
    for slurm_id in ("1", "2", "3"):
        slurm.queue[slurm_id] = "COMPLETED"
        slurm.controller[slurm_id] = "JobState=COMPLETED ExitCode=0:0"
    assert await asyncio.wait_for(asyncio.gather(*futures), 5) == [ExitStatus(0)] * 3
    await watch.close()


@dataclass
class FlakySlurm(FakeSlurm):
    """Raises an unexpected error (a bug, not a Slurm refusal) on the first `failures` squeue calls."""

    failures: int = 1

    async def run(self, program: str, *args: str) -> CommandResult:
        if program == "squeue" and self.failures > 0:
            self.failures -= 1
            raise RuntimeError("squeue output nobody expected")
        return await super().run(program, *args)


async def test_the_owned_loop_survives_a_failing_poll_and_outlives_its_jobs(caplog: pytest.LogCaptureFixture) -> None:
    slurm = FlakySlurm(queue={"5": "RUNNING"})
    watch = watch_over(slurm)
    ended = watch.follow("5")  # before the owner runs (re-attaching at start): a loop of its own for now
    owner = asyncio.create_task(watch.run())
    try:
        await watch.ticks.wait_for(2)
        assert not any(t.get_name() == "slurm-watch" for t in asyncio.all_tasks()), "the owner took over"
        assert watch.ticks.failed == 1 and "Slurm poll 1 failed" in caplog.text and "RuntimeError" in caplog.text
        slurm.queue["5"] = "COMPLETED"
        slurm.controller["5"] = "JobState=COMPLETED ExitCode=0:0"
        assert await asyncio.wait_for(ended, 5) == ExitStatus(0)
        assert not owner.done(), "with no job left the loop idles; it never returns"
        slurm.queue["6"] = "RUNNING"
        before = watch.ticks.total
        watch.follow("6")  # a new job wakes the idle loop
        await watch.ticks.wait_for(before + 1)
        assert watch.state("6") == "RUNNING"
    finally:
        owner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await owner
