"""Supervision: a failing step is logged and counted and the loop goes on; a task that ends is fatal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from fedgate.common.supervise import Cycles, Supervisor

log = logging.getLogger("test.supervise")


async def test_a_failing_step_is_logged_counted_and_the_next_step_runs(caplog: pytest.LogCaptureFixture) -> None:
    cycles = Cycles(log, "cycle")
    calls: Iterator[Exception | int] = iter([ValueError("boom"), 3])

    def step() -> int:
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    assert cycles.run(step) is None
    assert cycles.run(step) == 3
    assert (cycles.completed, cycles.failed) == (1, 1)
    assert "cycle 1 failed" in caplog.text and "ValueError: boom" in caplog.text  # with its traceback


async def test_wait_for_returns_when_the_loop_has_run_and_times_out_when_it_has_not() -> None:
    cycles = Cycles(log)

    async def loop() -> None:
        for _ in range(3):
            await asyncio.sleep(0)
            cycles.run(lambda: None)

    task = asyncio.create_task(loop())
    assert await cycles.wait_for(3) >= 3
    await task
    with pytest.raises(TimeoutError):
        await cycles.wait_for(4, timeout=0.05)


async def test_a_task_that_dies_is_a_failure_with_its_name(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor(log)

    async def dies() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("scheduler broke")

    supervisor.spawn(dies(), "scheduler")
    failure = await asyncio.wait_for(supervisor.wait_failure(), 5)
    assert failure.task == "scheduler" and isinstance(failure.error, RuntimeError)
    assert "task 'scheduler' died: RuntimeError: scheduler broke" in caplog.text
    await supervisor.stop()


async def test_a_task_that_returns_is_a_failure_too() -> None:
    supervisor = Supervisor(log)

    async def returns() -> None:
        return None

    supervisor.spawn(returns(), "policy watcher")
    failure = await asyncio.wait_for(supervisor.wait_failure(), 5)
    assert failure.error is None and "ended although it should run" in failure.describe()
    await supervisor.stop()


async def test_stop_cancels_every_task_and_is_not_a_failure() -> None:
    supervisor = Supervisor(log)
    task = supervisor.spawn(asyncio.sleep(3600), "sleeper")
    await supervisor.stop()
    assert task.cancelled() and not supervisor.failed


async def test_a_task_that_ends_after_begin_stop_is_not_a_failure() -> None:
    supervisor = Supervisor(log)
    closing = asyncio.Event()

    async def link() -> None:
        await closing.wait()  # a connection loop that returns once it is closed on purpose

    task = supervisor.spawn(link(), "link")
    supervisor.begin_stop()
    closing.set()
    await task
    assert not supervisor.failed
    await supervisor.stop()
