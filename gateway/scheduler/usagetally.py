"""Usage tallies: what the jobs holding cards add up to, kept as running totals, so that reading live usage costs
O(scopes), not O(jobs holding cards).

Owns: `Holdings` (cards held per (tenant, project, class) and leased per (site, class), and the card-hours that
running attempts have accrued this day / week / month, each updated when a job starts or stops holding cards) and
`EndedHours` (the card-hours of ended attempts per period: read from the store once per period, then added to as
attempts end). Both are plain bookkeeping with the clock passed in; deciding what the numbers allow is
`gateway.policy.quotas`, and following the job book is `gateway.scheduler.liveusage`.

Why the accrual is cheap: a running attempt with `cards` cards that started at `start` has used
cards x (now - max(start, period start)) in the period. Per scope that sums to
sum(cards) x now - sum(cards x max(start, period start)), so each period keeps the two sums per scope. They are
exact integers (microseconds from the period's start), so adding and removing attempts never drifts; the one
rounding is the final division into hours.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from gateway.jobs.model import Job
from gateway.policy.quotas import period_start
from gateway.store.rows import usage_rows

PERIODS = ("day", "week", "month")
Scope = tuple[str, str]  # (tenant, project)
MICROS_PER_HOUR = 3_600_000_000
K = TypeVar("K")


def _micros(delta: timedelta) -> int:
    """A duration in whole microseconds, exactly (a timedelta's own resolution)."""
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True)
class _Attempt:
    """What a running attempt adds to its scope's accrual."""

    scope: Scope
    cards: int
    start: datetime


@dataclass
class _Window:
    """Running attempts' accrual in one period: per scope, sum(cards) and sum(cards x micros from the period's
    start to the attempt's start, or 0 when it started before the period)."""

    start: datetime
    cards: dict[Scope, int] = field(default_factory=dict)
    weighted: dict[Scope, int] = field(default_factory=dict)

    def add(self, attempt: _Attempt, sign: int) -> None:
        cards = self.cards.get(attempt.scope, 0) + sign * attempt.cards
        offset = _micros(max(attempt.start, self.start) - self.start)
        if cards:
            self.cards[attempt.scope] = cards
            self.weighted[attempt.scope] = self.weighted.get(attempt.scope, 0) + sign * attempt.cards * offset
        else:  # the scope's last running attempt ended: both sums are exactly 0 again
            self.cards.pop(attempt.scope, None)
            self.weighted.pop(attempt.scope, None)

    def hours(self, now: datetime) -> dict[Scope, float]:
        elapsed = _micros(now - self.start)
        return {s: (n * elapsed - self.weighted[s]) / MICROS_PER_HOUR for s, n in self.cards.items()}


class Holdings:
    """Cards held and leased, and card-hours accrued, by the jobs holding cards at a site now."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._held: dict[tuple[str, str, str], int] = defaultdict(int)
        self._leased: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._running: dict[str, _Attempt] = {}
        self._windows: dict[str, _Window] = {}
        self._latest_start: datetime | None = None  # the latest start ever counted: see `card_hours`

    @property
    def jobs(self) -> Mapping[str, Job]:
        """The jobs holding cards now, by id (read only)."""
        return self._jobs

    def hold(self, job: Job) -> None:
        """`job` holds cards now (new, or changed while holding: its previous version is replaced)."""
        self.release(job.job_id)
        self._jobs[job.job_id] = job
        self._count(job, +1)

    def release(self, job_id: str) -> Job | None:
        """The job stopped holding cards; the version that held them (None if it held none)."""
        job = self._jobs.pop(job_id, None)
        if job is not None:
            self._count(job, -1)
        return job

    def _count(self, job: Job, sign: int) -> None:
        tenant, project = job.spec.tenant, job.spec.project
        for p in job.placements:
            _add(self._held, (tenant, project, p.accelerator_class), sign * p.cards)
            _add(self._leased[p.site], p.accelerator_class, sign * p.cards)
            if not self._leased[p.site]:
                del self._leased[p.site]
        if job.start_time is None:
            return
        if sign > 0:
            attempt = _Attempt((tenant, project), sum(p.cards for p in job.placements), job.start_time)
            self._running[job.job_id] = attempt
            if self._latest_start is None or attempt.start > self._latest_start:
                self._latest_start = attempt.start
        else:
            attempt = self._running.pop(job.job_id)
        for window in self._windows.values():
            window.add(attempt, sign)

    def held(self) -> dict[tuple[str, str, str], int]:
        """Cards held per (tenant, project, class): a fresh copy that counts from 0 (the cycle adds what it
        places to it)."""
        return defaultdict(int, self._held)

    def leases(self) -> dict[str, dict[str, int]]:
        """Cards leased per site and class: a fresh copy (callers add to it, `ReservationHold.withhold`)."""
        leased: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for site, classes in self._leased.items():
            leased[site].update(classes)
        return leased

    def card_hours(self, period: str, now: datetime) -> dict[Scope, float]:
        """Card-hours the running attempts have used in the `period` that `now` falls in, per scope."""
        start = period_start(period, now)
        if self._latest_start is not None and self._latest_start > now:
            # The clock stood before an attempt's start (it went back): such an attempt counts 0, not less, which
            # the sums cannot say; walk the attempts instead. The gateway never records a start after its own
            # clock (`Dispatcher._start_time`), so this stays off.
            return _accrued(self._running.values(), start, now)
        window = self._windows.get(period)
        if window is None or window.start != start:  # first use, or the period turned: count afresh
            window = self._windows[period] = _Window(start)
            for attempt in self._running.values():
                window.add(attempt, +1)
        return window.hours(now)


def _add(counts: dict[K, int], key: K, n: int) -> None:
    """Add `n` to a count, dropping it at 0 (so the tallies hold only scopes that hold something)."""
    total = counts.get(key, 0) + n
    if total:
        counts[key] = total
    else:
        counts.pop(key, None)


def _accrued(attempts: Iterable[_Attempt], start: datetime, now: datetime) -> dict[Scope, float]:
    """The straightforward sum, attempt by attempt (what the running totals stand for)."""
    hours: dict[Scope, float] = defaultdict(float)
    for a in attempts:
        hours[a.scope] += max(0.0, (now - max(a.start, start)).total_seconds() / 3600) * a.cards
    return hours


EndedRead = Callable[[datetime], tuple[dict[Scope, float], frozenset[tuple[str, int]]]]
"""Reads the ended card-hours since a time from the store, with the (job id, attempt) of every ended attempt the
read already counts but the job book has not announced yet (a grouped write that committed first)."""


class EndedHours:
    """Card-hours of attempts that ended in the current day / week / month, per scope: read from the store when
    a period is first asked for or has turned (at start, so also when a gateway takes over), then kept in step by
    `ended` instead of being read again.

    Contract with the job book: an attempt is announced to `ended` once, after its usage rows are durable. A
    grouped write may commit in the book's writer thread before it is announced on the loop; a read in that gap
    would count the attempt and then `ended` would count it again. So the read runs in the writer thread between
    writes (`JobBook.read_after_writes`) and names the attempts it counted ahead of their announcement, which
    `ended` then leaves out of that period once."""

    def __init__(self, read: EndedRead) -> None:
        self._read = read
        self._periods: dict[str, tuple[datetime, dict[Scope, float], set[tuple[str, int]]]] = {}

    def card_hours(self, period: str, now: datetime) -> dict[Scope, float]:
        start = period_start(period, now)
        cached = self._periods.get(period)
        if cached is None or cached[0] != start:
            hours, counted_ahead = self._read(start)
            cached = self._periods[period] = (start, hours, set(counted_ahead))
        return cached[1]

    def ended(self, job: Job) -> None:
        """`job`'s attempt ended and its usage rows are in the store: count them where the store query would."""
        rows = usage_rows(job)  # one row per class, as the store keeps them
        for start, hours, counted_ahead in self._periods.values():
            if (job.job_id, job.attempt) in counted_ahead:
                counted_ahead.discard((job.job_id, job.attempt))  # the read that filled this period counted it
                continue
            for _, _, tenant, project, _, _, _, end, card_hours in rows:
                if end >= start.isoformat():  # the store's own test (`card_hours_since`), on the same strings
                    hours[(tenant, project)] = hours.get((tenant, project), 0.0) + card_hours
