"""Bounded polling for things no event announces (a file appearing, a process dying)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(condition: Callable[[], object], within_s: float = 10.0, what: str = "condition") -> None:
    """Return once `condition()` is truthy; fail the test after `within_s` seconds."""
    step = 0.02
    for _ in range(int(within_s / step) + 1):
        if condition():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"{what} did not happen within {within_s}s")
