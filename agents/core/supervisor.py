"""Watching started attempts until they end, and stopping them when asked, through one backend.

Owns: one watcher task per live attempt (enforcing its max runtime), the stop requests (cancel, preempt,
max runtime, shutdown; the first reason wins), deciding the final state from the exit status, and
waiting for all of that at shutdown. These tasks are per attempt, not per agent: one that fails is logged
with its traceback and its attempt is reported LOST ("the site lost track of the job"), after a bounded attempt
to stop it, so the gateway queues the job again; the agent and the other attempts go on. A backend that
knows the attempt ended unobserved says so with `AttemptLost`: LOST too, unless the agent itself was
stopping it (then the stop's state). It does not allocate devices, check epochs or write updates: it
hands each ended attempt to the `on_end` callback the runtime gives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from agents.backends.base import Backend, ExitStatus
from agents.core.attempts import Attempt, StopRequest
from agents.core.model import JobState
from agents.errors import AttemptLost

log = logging.getLogger(__name__)

LOST_STOP_TIMEOUT_S = 10.0
"""How long stopping an attempt whose watch broke may take before it is reported LOST anyway."""


class AttemptSupervisor:
    """Background tasks around live attempts. All methods must be called on the agent's event loop."""

    def __init__(self, backend: Backend, *, grace_s: float, on_end: Callable[[Attempt], None]) -> None:
        self._backend = backend
        self._grace_s = grace_s
        self._on_end = on_end
        self._tasks: set[asyncio.Task[None]] = set()

    def watch(self, attempt: Attempt) -> None:
        """Follow a started attempt until it ends, then call `on_end` with its final state set."""
        self._spawn(self._watch(attempt), f"watching job {attempt.key[0]} epoch {attempt.key[1]}")

    def stop(self, attempt: Attempt, state: JobState, message: str, grace_s: float | None = None) -> None:
        """Ask the backend to stop the attempt; once it is gone it is reported as `state` with `message`."""
        if attempt.stop is not None or attempt.state.is_final or attempt.handle is None:
            return  # the first reason to stop wins; a second would only repeat the signal
        attempt.stop = StopRequest(state, message)
        log.info("job %s epoch %d: stopping (%s)", *attempt.key, message)
        grace = self._grace_s if grace_s is None else grace_s
        self._spawn(
            self._backend.cancel(attempt.handle, grace), f"stopping job {attempt.key[0]} epoch {attempt.key[1]}"
        )

    async def wait_all(self, timeout_s: float) -> None:
        """Wait until every watcher and stop has finished, at most `timeout_s`; cancel the stragglers."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._tasks and (remaining := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=remaining)
        for task in list(self._tasks):
            log.warning("gave up waiting for a job task after %.1fs", timeout_s)
            task.cancel()

    async def abandon(self) -> None:
        """Stop watching without stopping anything: the agent exits and leaves its jobs to the engine."""
        await asyncio.sleep(0)  # let tasks created just now start, so that cancelling them closes their work
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self, attempt: Attempt) -> None:
        try:
            status = await self._wait(attempt)
            attempt.exit_code = status.exit_code
            if attempt.stop is not None:
                attempt.state, attempt.message = attempt.stop.state, attempt.stop.message
            elif status.succeeded:
                attempt.state, attempt.message = JobState.SUCCEEDED, status.describe()
            else:
                attempt.state, attempt.message = JobState.FAILED, status.describe()
        except AttemptLost as exc:
            log.warning("job %s epoch %d: lost: %s", *attempt.key, exc.message)
            attempt.state, attempt.message = JobState.LOST, f"the site lost track of the job: {exc.message}"
            if attempt.stop is not None:
                attempt.state, attempt.message = attempt.stop.state, attempt.stop.message
        except Exception as exc:  # losing track of one job must not take the agent down
            log.exception("job %s epoch %d: lost track of the job", *attempt.key)
            await self._stop_lost(attempt)
            attempt.state, attempt.message = JobState.LOST, f"the site lost track of the job ({exc})"
        try:
            self._on_end(attempt)
        except Exception:  # the journal or the update could not be written: say so, with the cause
            log.exception("job %s epoch %d: recording its end (%s) failed", *attempt.key, attempt.state.name)

    async def _stop_lost(self, attempt: Attempt) -> None:
        """Best effort, bounded: a job whose watch broke may still run, and the gateway will start it again
        elsewhere, so ask the backend to stop it before its devices are freed."""
        assert attempt.handle is not None, "only started attempts are watched"
        try:
            await asyncio.wait_for(self._backend.cancel(attempt.handle, 0.0), timeout=LOST_STOP_TIMEOUT_S)
        except Exception:
            log.exception("job %s epoch %d: could not stop the attempt it lost track of", *attempt.key)

    async def _wait(self, attempt: Attempt) -> ExitStatus:
        assert attempt.handle is not None, "only started attempts are watched"
        waiter = asyncio.ensure_future(self._backend.wait(attempt.handle))
        try:
            limit = attempt.launch.max_runtime_s
            if limit > 0:
                done, _ = await asyncio.wait({waiter}, timeout=limit)
                if not done:
                    self.stop(attempt, JobState.FAILED, f"exceeded max runtime of {describe_seconds(limit)}")
            return await waiter
        finally:
            waiter.cancel()

    def _spawn(self, work: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        task = asyncio.create_task(_logged(work, what), name=what)
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)
        return task


async def _logged(work: Coroutine[Any, Any, None], what: str) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        try:
            await work
        except Exception:
            log.exception("%s failed", what)


def describe_seconds(seconds: float) -> str:
    """90 -> '1m30s', 2.5 -> '2.5s', 7200 -> '2h0m0s': how a person would write a duration."""
    if seconds < 60:
        return f"{seconds:g}s"
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes}m{secs}s" if hours else f"{minutes}m{secs}s"
