"""Offer windows: what share of a pool a centre offers the federation at an instant, and when that may change.

Owns: the window rule both sides apply. The agent reports and enforces its offers by it (`agents.policy.terms`
reads the centre's policy into `OfferWindow`s and asks here), and the gateway's what-if twin
(`gateway.simulate.simsites`) makes its simulated centres offer by it, so that a simulated centre opens and
closes its offers exactly when a real one would. Pure: time is passed in as an aware datetime; nothing here
reads a clock, a file or a socket, and it knows neither jobs nor devices (callers pass plain numbers).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day names as the config writes them, in `datetime.weekday()` order."""
MINUTES_PER_DAY = 24 * 60

_HOURS = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]|24):([0-5][0-9])")
# Floating point makes 0.29 * 100 = 28.999999999999996; a share written with a few decimals must not lose
# a card to that, so products within this of a whole number count as that number.
_EPSILON = 1e-9


@dataclass(frozen=True)
class Hours:
    """A time-of-day range in minutes after local midnight, start inclusive, end exclusive. When start is
    after end the range wraps midnight (22:00-06:00 holds at 23:00 and at 05:59, not at 06:00)."""

    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> Hours:
        """`HH:MM-HH:MM` on a 24-hour clock; the end may be 24:00. Raises ValueError saying what to write."""
        match = _HOURS.fullmatch(text)
        if match is None:
            raise ValueError(
                f"hours {text!r} must be HH:MM-HH:MM on a 24-hour clock, e.g. 08:00-20:00; a window may wrap "
                "midnight (22:00-06:00)"
            )
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if end > MINUTES_PER_DAY:
            raise ValueError(f"hours {text!r} ends after 24:00; write 24:00 or an earlier time")
        if start == end % MINUTES_PER_DAY:
            raise ValueError(f"hours {text!r} starts where it ends; leave hours out for the whole day")
        return cls(start, end)

    def contains(self, minute: int) -> bool:
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def __str__(self) -> str:
        return f"{_clock(self.start)}-{_clock(self.end)}"


@dataclass(frozen=True)
class OfferWindow:
    """One line of a pool's offer schedule: the share of the pool offered when the window holds."""

    share: float
    """Fraction of the pool's cards offered, 0..1 (0.3 = 30 %). The pool's `offered` stays the ceiling."""
    hours: Hours | None = None
    """Time of day in the policy's time zone; None: all day."""
    days: tuple[str, ...] = ()
    """Days of the week (`mon`..`sun`) in the policy's time zone, judged at the instant itself (so 02:00 on
    a Saturday is `sat` even inside a Friday-night window); empty: every day."""

    @property
    def always(self) -> bool:
        """True for the catch-all window (no hours, no days) that ends every schedule."""
        return self.hours is None and not self.days

    def holds(self, local: datetime) -> bool:
        """Does the window hold at `local`, a datetime already in the policy's time zone?"""
        if self.days and DAYS[local.weekday()] not in self.days:
            return False
        return self.hours is None or self.hours.contains(local.hour * 60 + local.minute)

    def describe(self) -> str:
        """`mon-fri 08:00-20:00`, `sat,sun`, `22:00-06:00` or `otherwise`."""
        parts = [_describe_days(self.days)] if self.days else []
        parts += [str(self.hours)] if self.hours is not None else []
        return " ".join(parts) or "otherwise"


Schedule = Mapping[str, tuple[OfferWindow, ...]]
"""Per pool class, windows checked in order (first that holds wins); the last one always holds."""


def window_at(schedule: Schedule, zone: ZoneInfo, accelerator_class: str, at: datetime) -> OfferWindow | None:
    """The window that holds for the class at `at`; None when the class has no schedule."""
    local = at.astimezone(zone)
    return next((w for w in schedule.get(accelerator_class, ()) if w.holds(local)), None)


def offer_of(window: OfferWindow | None, offered: int, cards: int) -> int:
    """Cards of a pool of `cards` (`offered` at most) offered while `window` holds: min(offered, floor(share x
    cards)); `offered` when no window applies."""
    if window is None:
        return offered
    return min(offered, math.floor(window.share * cards + _EPSILON))


def takes(window: OfferWindow | None, offer: int, cards: int, in_use: int) -> bool:
    """Whether an offer of `offer` cards, `in_use` of them already held by federated work, takes `cards` more.
    A pool without a window (None) is limited by its declared offer alone, which the device allocator enforces."""
    return window is None or cards <= offer - in_use


def next_change(schedule: Schedule, zone: ZoneInfo, at: datetime) -> datetime | None:
    """The first instant after `at` at which some pool's window may change (a window's start or end, or a
    local midnight when a window names days); None when no schedule ever changes."""
    windows = [w for windows in schedule.values() for w in windows]
    minutes = {m % MINUTES_PER_DAY for w in windows if w.hours is not None for m in (w.hours.start, w.hours.end)}
    if any(w.days for w in windows):
        minutes.add(0)
    if not minutes:
        return None
    today = at.astimezone(zone).date()
    candidates = (
        datetime.combine(today + timedelta(days=d), time(m // 60, m % 60), tzinfo=zone)
        for d in range(9)  # a week covers every day pattern; the spare days cover time-zone shifts
        for m in minutes
    )
    return min((c for c in candidates if c > at), default=None)


def lowest_offer(
    schedule: Schedule,
    zone: ZoneInfo,
    accelerator_class: str,
    offered: int,
    cards: int,
    span: tuple[datetime, datetime],
    now: datetime,
    max_steps: int,
) -> tuple[int, str]:
    """The fewest cards a pool (`cards`, `offered` at most) offers at any instant of `span` = [start, end), and
    how that was worked out: by following the schedule through the window, or (a schedule that turns more than
    `max_steps` times in it, too busy to follow) the offer at `now`. What a centre may promise an advance
    booking."""
    start, end = span

    def offer(at: datetime) -> int:
        return offer_of(window_at(schedule, zone, accelerator_class, at), offered, cards)

    lowest, at, steps = offer(start), start, 0
    while (change := next_change(schedule, zone, at)) is not None and change < end:
        steps += 1
        if steps > max_steps:
            return offer(now), "offered now (its schedule is too busy to follow this window)"
        lowest, at = min(lowest, offer(change)), change
    if not schedule.get(accelerator_class):
        return lowest, "offered"
    return lowest, "offered through the whole window by its offer schedule"


def capped_room(whole: int, partial: int, free: int, per_node: int) -> tuple[int, int]:
    """Free whole nodes and the most free cards on a partly used node, as reported when only `free` cards may be
    placed (an offer a window shrank below the pool caps them): a node the offer no longer covers whole keeps
    the cards it may still give. Without a node shape (`per_node` 0) both stand as given."""
    if not per_node:
        return whole, partial
    capped = min(whole, free // per_node)
    if capped < whole:
        partial = min(per_node - 1, max(partial, free - capped * per_node))
    return capped, min(partial, free)


def _describe_days(days: tuple[str, ...]) -> str:
    """Consecutive runs as ranges: (mon, tue, wed, thu, fri) -> mon-fri; (sat, sun) -> sat,sun."""
    numbers = sorted(DAYS.index(d) for d in days)
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ",".join(DAYS[r[0]] if len(r) < 3 else f"{DAYS[r[0]]}-{DAYS[r[-1]]}" for r in runs)


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"
