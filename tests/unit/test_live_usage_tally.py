"""Live usage kept as running totals gives the numbers a from-scratch recompute gives, at every step.

A seeded random walk drives real jobs through a real job book over a real SQLite store: dispatches, gang
reservations, starts (some backdated across midnight), ends of every kind (some dated earlier), preemptions and
lost attempts with their requeue, hand-backs, sites draining and re-reporting, the clock crossing day, week
(Monday) and month boundaries (and now and then stepping back), and gateway restarts (a fresh `LiveUsage` that
reads the store again, as a gateway taking over does).
After every step `LiveUsage` is compared with `reference_usage`: the computation it replaced, kept here as it
was (every holding job walked per period, the ended attempts' card-hours read from the store on each call).

Floating point: the reference sums one float per job in job order, the running totals divide one exact integer
(card-microseconds) and add ended hours in a different order; both are exact to a few ulps of the figures (at
most a few thousand card-hours here, ulp ~1e-13). The tolerance, 1e-12 absolute or relative, is far above that
rounding and below one card-microsecond (2.8e-10 card-hours), so an off-by-a-microsecond accrual would fail.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.jobs.book import JobBook
from gateway.jobs.events import EventBus
from gateway.jobs.model import Job, JobEvent, JobSpec, JobState, Placement, Resources, StackRun
from gateway.placement.backfill import Release, earliest_start, earliest_start_in_order, latest_end
from gateway.placement.preemption import priority_class
from gateway.policy import load_catalogue
from gateway.policy.document import REPO_POLICIES
from gateway.policy.holder import PolicyHolder
from gateway.policy.quotas import Usage, period_start
from gateway.scheduler.liveusage import LiveUsage
from gateway.sites.model import Pool, SiteView
from gateway.sites.registry import SiteRegistry
from gateway.store import Store, open_store

START = datetime(2026, 11, 29, 21, 0, tzinfo=UTC)  # a Sunday evening: day, week and month turn within 3 days
SITES = ("centre-a", "centre-b", "centre-c")
CLASSES = ("nvidia-h100", "ascend-910b")
SCOPES = (("deepsea-ai", "llama-sft"), ("deepsea-ai", "eval"), ("aurora-lab", "climate"))
TOLERANCE = 1e-12


def reference_usage(
    holding: Mapping[str, Job], store: Store, registry: SiteRegistry, now: datetime, views: list[SiteView] | None
) -> tuple[Usage, dict[str, dict[str, int]]]:
    """Live usage and leases as `LiveUsage` computed them before issue 16: from scratch, per call."""
    leased: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    held: dict[tuple[str, str, str], int] = defaultdict(int)
    hours: dict[tuple[str, str, str], float] = defaultdict(float)
    for job in holding.values():
        for p in job.placements:
            leased[p.site][p.accelerator_class] += p.cards
            held[(job.spec.tenant, job.spec.project, p.accelerator_class)] += p.cards
    for period in ("day", "week", "month"):
        start = period_start(period, now)
        for (tenant, project), used in store.card_hours_since(start).items():
            hours[(tenant, project, period)] += used
        for job in holding.values():
            if job.start_time is not None:
                elapsed = (now - max(job.start_time, start)).total_seconds() / 3600
                cards = sum(p.cards for p in job.placements)
                hours[(job.spec.tenant, job.spec.project, period)] += max(0.0, elapsed) * cards
    offered: dict[str, int] = defaultdict(int)
    for view in views if views is not None else registry.views(leased):
        if view.connected and not view.draining:
            for pool in view.pools:
                offered[pool.accelerator_class] += pool.offered
    return Usage(held, hours, offered), leased


def assert_same_counts(got: Mapping[Any, int], want: Mapping[Any, int]) -> None:
    assert {k: n for k, n in got.items() if n} == {k: n for k, n in want.items() if n}


def assert_same_hours(got: Mapping[tuple[str, str, str], float], want: Mapping[tuple[str, str, str], float]) -> None:
    for key in set(got) | set(want):
        assert math.isclose(got.get(key, 0.0), want.get(key, 0.0), rel_tol=TOLERANCE, abs_tol=TOLERANCE), key


class World:
    """A gateway's job book and live usage over a real store, with a clock the walk moves."""

    def __init__(self, tmp_path: Path, rng: random.Random) -> None:
        self.rng = rng
        self.now = START
        self.store = open_store(f"sqlite:///{tmp_path / 'gw.db'}")
        self.registry = SiteRegistry()
        for site in SITES:
            self.registry.connect(site, "test", self.now)
            self.report(site)
        self.count = 0
        self.restart()

    def clock(self) -> datetime:
        return self.now

    def restart(self) -> None:
        """A fresh book and live usage over the same store and sites: what a restarted gateway builds."""
        self.book = JobBook(self.store, self.clock, EventBus())
        policy = PolicyHolder(
            REPO_POLICIES / "federation.yaml", load_catalogue(REPO_POLICIES / "accelerators.yaml"), self.clock()
        )
        self.usage = LiveUsage(self.store, policy, self.registry, self.clock)
        self.book.listen(self.usage.job_changed)
        self.book.load()

    def flip_normal(self) -> None:
        policy = self.usage.policy.policy
        normal = policy.priorities["normal"]
        flipped = dataclasses.replace(normal, preemptible=not normal.preemptible)
        self.usage.policy.policy = dataclasses.replace(policy, priorities={**policy.priorities, "normal": flipped})

    def report(self, site: str) -> None:
        pools = [Pool(cls, 64, self.rng.randrange(0, 65), 64, 8) for cls in CLASSES if self.rng.random() < 0.8]
        self.registry.report(site, pools, True, self.now)

    def jobs_in(self, *states: JobState) -> list[Job]:
        return sorted((j for j in self.book.active.values() if j.state in states), key=lambda j: j.job_id)

    def create(self) -> None:
        self.count += 1
        tenant, project = self.rng.choice(SCOPES)
        spec = JobSpec(tenant, project, Resources(self.rng.choice(CLASSES), None, 1), (StackRun("", "img", ()),))
        spec = dataclasses.replace(spec, priority_class=self.rng.choice(("", "", "low", "high")))  # "": normal
        if self.rng.random() < 0.8:  # most with a max runtime (a known latest end), some may run for ever
            runtime = timedelta(minutes=self.rng.choice((5, 30, 30, 120, 600)))  # equal ends now and then
            spec = dataclasses.replace(spec, max_runtime=runtime)
        job = Job(f"job-{self.count:04d}", spec, JobState.QUEUED, self.now, self.now)
        self.store.create_jobs([(job, JobEvent(job.job_id, JobState.QUEUED, self.now))])
        self.book.remember(job)

    def placements(self) -> tuple[Placement, ...]:
        cls = self.rng.choice(CLASSES)
        if self.rng.random() < 0.2:  # a gang over two sites, sometimes of one class (its parts add up in one row)
            a, b = self.rng.sample(SITES, 2)
            other = cls if self.rng.random() < 0.5 else self.rng.choice(CLASSES)
            return (Placement(a, cls, self.rng.randrange(1, 9)), Placement(b, other, self.rng.randrange(1, 9)))
        return (Placement(self.rng.choice(SITES), cls, self.rng.randrange(1, 17)),)

    def step(self) -> None:
        """One random event."""
        rng, move = self.rng, self.rng.random()
        queued = self.jobs_in(JobState.QUEUED)
        dispatched = self.jobs_in(JobState.DISPATCHED)
        reserving = self.jobs_in(JobState.RESERVING)
        running = self.jobs_in(JobState.RUNNING)
        if move < 0.15 or (not queued and move < 0.5):
            self.create()
        elif move < 0.3 and queued:
            state = JobState.RESERVING if rng.random() < 0.15 else JobState.DISPATCHED
            job = rng.choice(queued)
            self.book.transition(job, state, "placed", placements=self.placements(), attempt=job.attempt + 1)
        elif move < 0.33 and reserving:
            job = rng.choice(reserving)
            if rng.random() < 0.7:
                self.book.transition(job, JobState.DISPATCHED, "committed")
            else:
                self.book.transition(job, JobState.QUEUED, "refused", placements=())
        elif move < 0.45 and dispatched:
            job = rng.choice(dispatched)
            kind = rng.random()
            if kind < 0.75:  # started, up to 20 minutes before the gateway heard (across midnight at times)
                started = self.now - timedelta(seconds=rng.randrange(0, 1200), microseconds=rng.randrange(10**6))
                self.book.transition(job, JobState.RUNNING, "running", site=job.sites[0], start_time=started)
            elif kind < 0.9:
                self.book.transition(job, JobState.QUEUED, "handed back", placements=(), start_time=None)
            else:
                self.book.transition(job, rng.choice((JobState.SUCCEEDED, JobState.FAILED)), "ended unstarted")
        elif move < 0.58 and running:
            job = rng.choice(running)
            end = rng.choice(
                (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.PREEMPTED, JobState.LOST)
            )
            changes: dict[str, object] = {}
            if rng.random() < 0.2:  # an end dated before now (the book takes one if given), across midnight at times
                changes["end_time"] = max(job.start_time or self.now, self.now - timedelta(seconds=rng.randrange(1200)))
            (ended,) = self.book.transitions([(job, end, "ended", job.sites[0], None, changes)])
            if end in {JobState.PREEMPTED, JobState.LOST}:
                if rng.random() < 0.2:
                    self.book.transition(ended, JobState.CANCELLED, "cancelled while waiting")
                else:
                    self.book.requeue(ended, "again")
        elif move < 0.62:
            site = rng.choice(SITES)
            if rng.random() < 0.5:
                self.registry.set_draining(site, not self.registry.get(site).draining)
            else:
                self.report(site)
        elif move < 0.64:
            self.restart()
        elif move < 0.66:  # a policy reload that turns the default class preemptible, or back
            self.flip_normal()
        else:  # time passes: mostly seconds to minutes, sometimes hours
            if rng.random() < 0.02:  # the wall clock stepped back: an attempt may have started "after" now
                self.now -= timedelta(seconds=rng.randrange(1, 600))
            elif rng.random() < 0.05:
                self.now += timedelta(hours=rng.randrange(1, 12), microseconds=rng.randrange(10**6))
            else:
                self.now += timedelta(seconds=rng.randrange(1, 900), microseconds=rng.randrange(10**6))

    def check(self) -> None:
        holding = {j.job_id: j for j in self.book.active.values() if j.state.holds_capacity}
        want, want_leases = reference_usage(holding, self.store, self.registry, self.now, None)
        got = self.usage.usage()
        assert_same_counts(got.held, want.held)
        assert_same_hours(got.card_hours, want.card_hours)
        assert_same_counts(got.offered, want.offered)
        leases = self.usage.leases()
        assert {s: {c: n for c, n in cs.items() if n} for s, cs in leases.items() if any(cs.values())} == {
            s: dict(cs) for s, cs in want_leases.items()
        }
        assert {j.job_id for j in self.usage.holding()} == set(holding)
        self.check_releases(holding)
        policy = self.usage.policy.policy
        preemptible = {i for i, j in holding.items() if (c := priority_class(policy, j.spec)) and c.preemptible}
        victims = self.usage.preemptible_holding(policy)
        assert set(victims) == preemptible and all(victims[i] is holding[i] for i in victims)  # latest versions
        views = self.registry.views(leases)[:2]  # placement's own views (here: a subset) give their offers
        assert_same_counts(
            self.usage.usage(views).offered,
            reference_usage(holding, self.store, self.registry, self.now, views)[0].offered,
        )

    def check_releases(self, holding: Mapping[str, Job]) -> None:
        """The kept releases are, pool by pool, the ones the cycle once built from every holding job (the
        reference, as `CyclePlan` built it before issue 16), in end order, and give the same earliest starts."""
        want: dict[tuple[str, str], list[Release]] = defaultdict(list)
        for job in holding.values():
            start = job.start_time if job.state == JobState.RUNNING else None
            end = latest_end(start, job.spec.max_runtime, self.now)
            for p in job.placements:
                want[(p.site, p.accelerator_class)].append(Release(end, p.cards))
        for site in SITES:
            for cls in CLASSES:
                got = list(self.usage.releases.at(site, cls, self.now))
                known = [r for r in want.get((site, cls), []) if r.end is not None]
                assert sorted(got, key=_key) == sorted(known, key=_key)
                assert [r.end for r in got] == sorted(r.end for r in known if r.end is not None)
                total = sum(r.cards for r in known)
                for cards in (1, 4, 9, total, total + 1):
                    free = self.rng.randrange(0, 4)
                    assert earliest_start_in_order(cards, free, iter(got), self.now) == earliest_start(
                        cards, free, want.get((site, cls), []), self.now
                    )


def _key(release: Release) -> tuple[datetime, int]:
    assert release.end is not None
    return release.end, release.cards


@pytest.mark.parametrize("seed", [16, 1016, 2016])
def test_running_totals_give_the_numbers_a_recompute_gives_at_every_step(tmp_path: Path, seed: int) -> None:
    world = World(tmp_path, random.Random(seed))
    turned: set[tuple[str, datetime]] = set()
    try:
        for _ in range(1000):
            world.step()
            world.check()
            turned.update((p, period_start(p, world.now)) for p in ("day", "week", "month"))
        # The walk crossed every kind of boundary, with attempts running and ended ones counted.
        assert sum(1 for p, _ in turned if p == "month") >= 2 and sum(1 for p, _ in turned if p == "week") >= 2
        assert len(world.store.card_hours_since(START)) == len(SCOPES)
    finally:
        world.store.close()


def test_an_ended_attempt_counts_once_whether_added_to_the_cache_or_read_from_the_store(tmp_path: Path) -> None:
    world = World(tmp_path, random.Random(0))
    try:
        world.create()
        (job,) = world.jobs_in(JobState.QUEUED)
        placed = (Placement("centre-a", "nvidia-h100", 4),)
        job = world.book.transition(job, JobState.DISPATCHED, "placed", placements=placed, attempt=1)
        job = world.book.transition(job, JobState.RUNNING, "running", start_time=world.now)
        world.now += timedelta(hours=1)
        world.usage.usage()  # every period's ended hours are read now, and kept
        world.book.transition(job, JobState.SUCCEEDED, "done")  # so this attempt is added to them
        world.now += timedelta(minutes=30)  # 22:30 on the Sunday: every period still holds the attempt
        scope = (job.spec.tenant, job.spec.project)
        added = world.usage.usage().card_hours
        world.restart()  # a new gateway reads them from the store instead
        read = world.usage.usage().card_hours
        for period in ("day", "week", "month"):
            assert added[(*scope, period)] == read[(*scope, period)] == pytest.approx(4.0)
    finally:
        world.store.close()
