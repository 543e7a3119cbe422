"""Audit coalescing: a flood of refusals writes a bounded number of audit rows.

Owns: `DenialCoalescer`, which decides for each refusal whether its row is written now (the first of its kind
from its source, for its method and reason, in a window of `window_s` seconds) or counted, and hands back, once
a window has ended, one summary per (kind, source, method, reason) with the number of refusals it did not
write; and the bound on the keys it tracks per window (`max_keys`; beyond it refusals of any new source are
counted together under source `*`). So a flood writes a bounded number of rows and summaries per window,
whatever its rate. Pure: the clock (seconds, monotonic) is passed in. It writes nothing itself
(gateway.trust.service does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

OVERFLOW_SOURCE = "*"
"""The source under which refusals of new sources are counted once a window tracks `max_keys` keys."""


@dataclass(frozen=True)
class Summary:
    """Refusals of one kind from one source for one reason that a window counted instead of writing."""

    kind: str
    source: str
    reason: str
    count: int
    window_s: float
    method: str = ""


class DenialCoalescer:
    def __init__(self, *, window_s: float, max_keys: int, clock: Callable[[], float]) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        self._started = clock()
        self._counts: dict[tuple[str, str, str, str], int] = {}

    def note(self, kind: str, source: str, reason: str, method: str = "") -> bool:
        """Count one refusal; True when its row should be written now (the first of its key in this window).
        Call `ended` first to close a window that has passed."""
        key = (kind, source, method, reason)
        if key not in self._counts and len(self._counts) >= self.max_keys:
            key = (kind, OVERFLOW_SOURCE, method, reason)
        first = key not in self._counts
        self._counts[key] = self._counts.get(key, 0) + (0 if first else 1)
        return first

    def ended(self, *, force: bool = False) -> list[Summary]:
        """The summaries of the window if it has passed (or `force`), then a new window; [] otherwise. Only keys
        with refusals beyond the first (those not written) give a summary."""
        now = self._clock()
        if not force and now - self._started < self.window_s:
            return []
        summaries = [
            Summary(kind, source, reason, count, self.window_s, method)
            for (kind, source, method, reason), count in self._counts.items()
            if count
        ]
        self._counts.clear()
        self._started = now
        return summaries
