"""Supervision of a process's long-lived tasks, the same on the gateway and the agent.

Owns: `Supervisor`, which owns every long-lived task of one process (a scheduler loop, a policy watcher, a
connection loop): a task that ends while the process should run, by an exception or by returning, is logged
with its traceback and makes the process stop with a non-zero exit, so that its own supervisor (systemd,
Kubernetes) restarts it, instead of running on with a part missing. And `Cycles`, the guard of a loop that
repeats one step (a scheduling cycle): an exception in one step is logged with its traceback and counted, and
the next step runs. It knows nothing of gRPC, the store or the domain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Failure:
    """Why a supervised process must stop: the task that ended and what ended it."""

    task: str
    error: BaseException | None
    """The exception the task raised; None when it returned although it should have run for ever."""

    def describe(self) -> str:
        if self.error is None:
            return f"task {self.task!r} ended although it should run until the process stops"
        return f"task {self.task!r} died: {type(self.error).__name__}: {self.error}"


class Supervisor:
    """Owns long-lived tasks. A task that ends before `stop()` is fatal: logged once with its traceback,
    recorded in `failure`, and `wait_failure()` returns, so the process can stop with a non-zero exit."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._tasks: dict[asyncio.Task[Any], str] = {}
        self._stopping = False
        self._failed = asyncio.Event()
        self.failure: Failure | None = None

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start `coro` as a supervised task named `name`; it MUST run until `stop()` cancels it."""
        task = asyncio.create_task(coro, name=name)
        self._tasks[task] = name
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        name = self._tasks.pop(task, task.get_name())
        if self._stopping or task.cancelled():
            return
        error = task.exception()
        self._fail(Failure(name, error))

    def _fail(self, failure: Failure) -> None:
        if self.failure is None:
            self.failure = failure
        self._log.critical(
            "%s; stopping the process (exit 1) so that its supervisor restarts it",
            failure.describe(),
            exc_info=failure.error,
        )
        self._failed.set()

    @property
    def failed(self) -> bool:
        return self.failure is not None

    async def wait_failure(self) -> Failure:
        """Return when a supervised task has ended (never, while all run)."""
        await self._failed.wait()
        assert self.failure is not None
        return self.failure

    def begin_stop(self) -> None:
        """The process has begun a graceful stop: from now on a task that ends (a link closed on purpose, in
        its own time) is not a failure. `stop()` still cancels what has not ended."""
        self._stopping = True

    async def stop(self) -> None:
        """Cancel every task and wait for them; what ends now is not a failure."""
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


@dataclass
class Cycles:
    """Counts the steps of one repeating loop, and guards each: a step that raises is logged and counted, the
    loop goes on. `wait_for` lets a test (or a caller) wait for the next completed step instead of sleeping."""

    log: logging.Logger
    what: str = "cycle"
    completed: int = 0
    """Steps that ran to the end."""
    failed: int = 0
    """Steps that raised (logged with their traceback); the loop went on."""
    _tick: asyncio.Event | None = field(default=None, repr=False)
    _observers: list[Callable[[float, object], None]] = field(default_factory=list, repr=False)

    def observe(self, observer: Callable[[float, object], None]) -> None:
        """Tell `observer(seconds, result)` of every synchronous step once it has ended (result None: it failed).
        Observers only watch (metrics); one that raises is logged and the loop goes on."""
        self._observers.append(observer)

    def run(self, step: Callable[[], T]) -> T | None:
        """Run one step; on an exception log it, count it and return None."""
        started = time.perf_counter()
        try:
            result = step()
        except Exception:
            self._failed_step()
            self._told(started, None)
            return None
        self._told(started, result)
        return self._completed_step(result)

    def _told(self, started: float, result: object) -> None:
        if not self._observers:
            return
        seconds = time.perf_counter() - started
        for observer in self._observers:
            try:
                observer(seconds, result)
            except Exception:
                self.log.exception("an observer of %s failed", self.what)

    async def run_async(self, step: Callable[[], Awaitable[T]]) -> T | None:
        """`run` for a coroutine step."""
        try:
            result = await step()
        except Exception:
            self._failed_step()
            return None
        return self._completed_step(result)

    def _completed_step(self, result: T) -> T:
        self.completed += 1
        self._notify()
        return result

    def _failed_step(self) -> None:
        """Called inside the `except`: logs the exception being handled, with its traceback."""
        self.failed += 1
        self.log.exception("%s %d failed (%d so far); the next one runs", self.what, self.total, self.failed)
        self._notify()

    @property
    def total(self) -> int:
        return self.completed + self.failed

    def _notify(self) -> None:
        if self._tick is not None:  # wake whoever waits, and give the next waiters a fresh event
            tick, self._tick = self._tick, None
            tick.set()

    async def wait_for(self, total: int, timeout: float = 10.0) -> int:  # noqa: ASYNC109 (a bound is the point)
        """Wait until at least `total` steps have run (completed or failed); returns the count. Raises
        TimeoutError after `timeout` s: a test that waits on a loop that stopped fails instead of hanging."""
        async with asyncio.timeout(timeout):
            while self.total < total:
                if self._tick is None:
                    self._tick = asyncio.Event()
                await self._tick.wait()
        return self.total
