"""Waiting in tests without sleeping as synchronisation.

Owns: the one bounded poll of the suite (`eventually`, and `eventually_async` inside an event loop), for things
no event announces (a file appearing, a process dying, a state seen through the client), and the waits on a
running gateway's scheduler (`scheduler_cycles`, `wait_cycles`): a test that asserts that something did NOT
happen first waits for the scheduler to have run more cycles, so that it fails when the scheduler is dead
instead of passing because nothing ran at all.
It does not start servers (tests/integration/harness.py does).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fedgate.common.supervise import Cycles
from gateway.transport.server import RunningGateway

if TYPE_CHECKING:
    from tests.integration.harness import GatewayHandle

POLL_S = 0.02
"""How often a look inside the event loop is repeated: often enough that a test does not wait for nothing."""
CALL_POLL_S = 0.05
"""How often a look from a test's thread is repeated: such a look is usually a call to a real server (a look
that costs a subprocess, such as asking Slurm, passes a longer `poll_s`)."""


def eventually(
    check: Callable[[], object],
    timeout: float = 15,
    what: str = "condition",
    *,
    detail: Callable[[], str] | None = None,
    poll_s: float = CALL_POLL_S,
) -> None:
    """Return once `check()` is truthy; fail naming `what` (and `detail()`, e.g. the tails of the logs of the
    processes under test) after `timeout` seconds. For a thread that does not run the event loop it waits on."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            more = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{more}")
        time.sleep(poll_s)


async def eventually_async(
    check: Callable[[], object],
    timeout: float = 10,  # noqa: ASYNC109 (a bound is the point)
    what: str = "condition",
    *,
    poll_s: float = POLL_S,
) -> None:
    """`eventually` inside an event loop: the loop runs on between looks. `check` may be a coroutine function
    (a look that itself awaits, such as asking a scheduler)."""
    deadline = time.monotonic() + timeout
    while not await _truthy(check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(poll_s)


async def _truthy(result: object) -> bool:
    return bool(await result) if inspect.isawaitable(result) else bool(result)


def alive(pid: int) -> bool:
    """True while process `pid` exists and is not a zombie waiting for its parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in {"Z", "X"}


def scheduler_cycles(running: RunningGateway) -> Cycles:
    """The cycle counter of a running gateway's scheduler loop (the one place tests reach for it)."""
    return running.core.scheduler.cycles


def wait_cycles(gateway: GatewayHandle, more: int = 3, timeout: float = 20) -> None:
    """Wait until the gateway's scheduler has run `more` cycles after this call; fails (TimeoutError) when the
    scheduler does not run, so that an assertion that something did not happen cannot pass on a dead loop."""
    cycles = scheduler_cycles(gateway.running)
    target = cycles.total + more
    gateway.loop.run(cycles.wait_for(target, timeout), timeout + 5)
