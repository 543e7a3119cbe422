"""The scheduler loop survives a bad cycle: the exception is logged with its traceback and counted, and the next
cycle runs and places the next job. The real loop (`Scheduler.run`) over a real core; one collaborator fails once."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest

from gateway.jobs.model import JobState
from tests.unit.schedworld import World


class FailsOnce:
    """Stands in for one collaborator's method: raises on its first call, then calls the real one."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("injected: the reservation clock broke")
        assert callable(self.real)
        self.real()


async def test_a_failing_cycle_is_logged_counted_and_the_next_job_is_placed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    w = World()
    w.site("centre-a", 16)
    scheduler = w.fed.scheduler
    broken = FailsOnce(w.fed.reservation_rounds.tick)
    monkeypatch.setattr(w.fed.reservation_rounds, "tick", broken)
    caplog.set_level(logging.ERROR, logger="fedgate.gateway.scheduler")
    loop = asyncio.create_task(scheduler.run(period=60, batch_window=0))  # only wake-ups drive it here
    try:
        first = w.submit(4, runtime=timedelta(hours=1))
        await scheduler.cycles.wait_for(1)
        assert (scheduler.cycles.failed, scheduler.cycles.completed) == (1, 0)
        assert w.state(first) == JobState.QUEUED  # the failed cycle placed nothing
        assert not loop.done()  # the loop runs on

        second = w.submit(4, runtime=timedelta(hours=1))
        await scheduler.cycles.wait_for(2)
        assert scheduler.cycles.completed >= 1 and scheduler.cycles.failed == 1
        assert w.state(second) == JobState.DISPATCHED
        assert w.state(first) == JobState.DISPATCHED  # the job the bad cycle missed is not lost
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
    failures = [r for r in caplog.records if "scheduling cycle" in r.getMessage() and "failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None and "injected" in str(failures[0].exc_info[1])
    assert broken.calls >= 2


async def test_without_the_guard_the_same_failure_would_end_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The double above really breaks a cycle: called bare, `schedule` raises (so the test above can fail)."""
    w = World()
    w.site("centre-a", 16)
    monkeypatch.setattr(w.fed.reservation_rounds, "tick", FailsOnce(w.fed.reservation_rounds.tick))
    w.submit(4)
    with pytest.raises(RuntimeError, match="injected"):
        w.fed.scheduler.schedule()
