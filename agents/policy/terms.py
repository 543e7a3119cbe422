"""The centre's terms (its veto over federated work) as pure functions of the policy and an instant.

Owns: `SitePolicy` (the validated `policy:` section of the agent config), offer windows, which window holds
at an instant, the effective offer of a pool, when the offers may next change, and whether a launch is
acceptable and, if not, which term refuses it and why. The terms the gateway also applies (tenants, projects,
job size, image registries) are judged by `fedgate.common.terms`, the one rule both sides use. Time is always
passed in as an aware datetime; nothing here reads a clock, a file or a socket. It does not read YAML
(`agents.policy.reader`) nor allocate devices (`agents.core.devices`): the runtime asks here first, then allocates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from agents.core.model import PoolSpec
from fedgate.common.terms import SiteTerms

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day names as the config writes them, in `datetime.weekday()` order."""
MINUTES_PER_DAY = 24 * 60
PREFIX = "site policy: "
"""Every refusal's message starts with this, so the job's owner sees that the centre, not the job, said no."""

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


@dataclass(frozen=True)
class SitePolicy:
    """The centre's terms: whom it serves, how big a job it takes, which images, and what share it offers
    when. The default accepts everything and offers each pool's `offered` at all times."""

    tenants: tuple[str, ...] = ()
    """Accepted tenants; empty: every tenant."""
    projects: tuple[str, ...] = ()
    """`tenant/project` pairs; a tenant named here may run only its listed projects."""
    max_job_cards: int | None = None
    """The largest job in cards; None: no limit beyond the offer."""
    image_registries: tuple[str, ...] = ()
    """Allowed image prefixes, `host[:port][/path]`; empty: any image."""
    timezone: str = "UTC"
    """IANA time zone the offer windows are written in."""
    offers: Mapping[str, tuple[OfferWindow, ...]] = field(default_factory=dict)
    """Per pool class, windows checked in order (first that holds wins); the last one always holds.
    A class without an entry is offered at its pool's `offered` at all times."""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)  # ZoneInfo caches instances by key

    @property
    def terms(self) -> SiteTerms:
        """The part of the policy the gateway needs to avoid sending work this site would refuse."""
        return SiteTerms(
            tenants=self.tenants,
            projects=self.projects,
            max_job_cards=self.max_job_cards or 0,
            image_registries=self.image_registries,
        )

    def window(self, accelerator_class: str, at: datetime) -> OfferWindow | None:
        """The window that holds for the class at `at`; None when the class has no schedule."""
        windows = self.offers.get(accelerator_class, ())
        local = at.astimezone(self.zone)
        return next((w for w in windows if w.holds(local)), None)


def effective_offer(policy: SitePolicy, pool: PoolSpec, at: datetime) -> int:
    """Cards of `pool` offered at `at`: min(offered, floor(share(at) * cards))."""
    window = policy.window(pool.accelerator_class, at)
    if window is None:
        return pool.offered
    return min(pool.offered, math.floor(window.share * pool.cards + _EPSILON))


def next_offer_change(policy: SitePolicy, at: datetime) -> datetime | None:
    """The first instant after `at` at which some pool's window may change (a window's start or end, or a
    local midnight when a window names days); None when no schedule ever changes."""
    windows = [w for schedule in policy.offers.values() for w in schedule]
    minutes = {m % MINUTES_PER_DAY for w in windows if w.hours is not None for m in (w.hours.start, w.hours.end)}
    if any(w.days for w in windows):
        minutes.add(0)
    if not minutes:
        return None
    zone = policy.zone
    today = at.astimezone(zone).date()
    candidates = (
        datetime.combine(today + timedelta(days=d), time(m // 60, m % 60), tzinfo=zone)
        for d in range(9)  # a week covers every day pattern; the spare days cover time-zone shifts
        for m in minutes
    )
    return min((c for c in candidates if c > at), default=None)


@dataclass(frozen=True)
class LaunchRequest:
    """What the terms judge about a launch."""

    tenant: str
    project: str
    accelerator_class: str
    cards: int
    image: str = ""


@dataclass(frozen=True)
class Refusal:
    """Why the centre will not take a launch."""

    term: str
    """The term that refused it: tenants, projects, max_job_cards, image_registries or offers."""
    message: str
    """For the job's owner; starts with `site policy: `."""


def judge_launch(
    policy: SitePolicy, pool: PoolSpec, request: LaunchRequest, at: datetime, in_use: int = 0
) -> Refusal | None:
    """None when the centre's terms take the launch at `at` with `in_use` cards of the pool already held by
    federated jobs; otherwise the first term (in the order of `Refusal.term`) that refuses it. The offers
    term applies to pools with a schedule; a pool without one is limited by its `offered` alone, which the
    device allocator enforces."""
    refused = policy.terms.judge(
        tenant=request.tenant, project=request.project, cards=request.cards, image=request.image
    )
    if refused is not None:
        return Refusal(refused.term, PREFIX + refused.message)
    window = policy.window(pool.accelerator_class, at)
    if window is None:
        return None  # no schedule: the pool's `offered` is the limit, and the device allocator enforces it
    offer = effective_offer(policy, pool, at)
    if request.cards > offer - in_use:
        held = f" and {min(in_use, offer)} of them are in use" if in_use else ""
        return Refusal(
            "offers",
            f"{PREFIX}{pool.accelerator_class} is offered at {offer} cards now "
            f"({_describe_share(window, pool, policy)}){held}; this job needs {request.cards}",
        )
    return None


def _describe_share(window: OfferWindow, pool: PoolSpec, policy: SitePolicy) -> str:
    share = f"{window.share * 100:g} % of {pool.cards}"
    return share if window.always else f"{share} during {window.describe()} {policy.timezone}"


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
