"""A cycle that looks only at new jobs (`gateway.scheduler.queue`: nothing freed, reported, reloaded or booked
since the last full pass, and the same minute) places exactly what a cycle re-examining every queued job would.

Two identical random federations (`test_cycle_equivalence`'s: rules, residency, quotas, site terms, draining
and offline sites, node shapes, capability requests) go through the same events; before each cycle the second is
told capacity changed, so it looks at every job. Both must dispatch the same jobs to the same places."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.app.compose import Core
from gateway.jobs.model import Job, JobSpec, JobState, Placement, Resources, StackRun
from gateway.scheduler.queue import JobQueue
from gateway.sites.model import Pool
from tests.unit.test_cycle_equivalence import _dispatched, _federation, _finish_some, _queue, _sites


def _world(folder: Path) -> Core:
    folder.mkdir(parents=True)
    return _federation(folder)


def _round(federation: Core, rng: random.Random, first: int) -> None:
    """What happens between two cycles: new jobs always; now and then some jobs end or a site reports anew."""
    event = rng.random()
    if event < 0.2:
        _finish_some(federation, rng)
    elif event < 0.35:
        site = rng.choice(sorted(view.name for view in federation.registry.views({})))
        pools = [  # cards the site's own users gave back
            Pool(p.accelerator_class, p.total, p.offered, min(p.offered, p.free + 4), 8)
            for p in federation.registry.view(site, {}).pools
        ]
        federation.registry.report(site, pools, True, federation.clock())
        federation.queue.capacity_changed()  # as the dispatcher does on a report
    _queue(federation, rng, rng.randint(1, 30), first)


def _cycle(federation: Core, full: bool) -> dict[str, Placement]:
    if full:
        federation.queue.capacity_changed()
    before = {j.job_id for j in federation.book.active.values() if j.state == JobState.DISPATCHED}
    federation.scheduler.schedule()
    return _dispatched(federation, before)


@pytest.mark.parametrize("seed", range(15))
def test_a_cycle_over_new_jobs_places_what_a_full_pass_would(tmp_path: Path, seed: int) -> None:
    _compare(tmp_path, seed)


def test_the_random_federations_do_skip_waiting_jobs(tmp_path: Path) -> None:
    skipping = [seed for seed in range(6) if _compare(tmp_path / str(seed), seed)]
    assert len(skipping) >= 3, f"only seeds {skipping} skipped a waiting job: the comparison says little"


def _compare(tmp_path: Path, seed: int) -> list[int]:
    """Run the two worlds side by side; returns how many waiting jobs each skipping cycle skipped."""
    worlds = [_world(tmp_path / "incremental"), _world(tmp_path / "full")]
    rngs = [random.Random(seed), random.Random(seed)]
    for world, rng in zip(worlds, rngs, strict=True):
        _sites(world, rng)
        _queue(world, rng, rng.randint(50, 300), 0)  # more than fits: many jobs stay queued
    skipped = _count_skipped(worlds[0])
    for cycle in range(6):
        incremental, full = _cycle(worlds[0], full=False), _cycle(worlds[1], full=True)
        assert incremental == full, f"seed {seed}, cycle {cycle}"
        assert set(worlds[0].queue.queued) == set(worlds[1].queue.queued)
        for world, rng in zip(worlds, rngs, strict=True):
            _round(world, rng, 10_000 * (cycle + 1))
    return skipped


def _count_skipped(federation: Core) -> list[int]:
    """Record how many waiting jobs each cycle that was not a full pass skipped (when it skipped any)."""
    skipped: list[int] = []
    choose = federation.scheduler._looked_at

    def counting(*args: Any, **kwargs: Any) -> tuple[list[str], bool]:
        chosen, full = choose(*args, **kwargs)
        if not full and len(chosen) < len(federation.queue.queued):
            skipped.append(len(federation.queue.queued) - len(chosen))
        return chosen, full

    federation.scheduler._looked_at = counting  # type: ignore[method-assign]
    return skipped


def test_freed_cards_reach_the_jobs_that_waited_in_the_same_cycle(tmp_path: Path) -> None:
    federation = _world(tmp_path / "w")
    rng = random.Random(3)
    _sites(federation, rng)
    _queue(federation, rng, 400, 0)
    federation.scheduler.schedule()
    waiting = set(federation.queue.queued)
    _finish_some(federation, rng)  # cards come back: the waiting jobs must be looked at again
    placed = _cycle(federation, full=False)
    assert set(placed) & waiting, "no job that had waited was placed on the freed cards"


def _spec() -> JobSpec:
    return JobSpec(
        tenant="t", project="p", resources=Resources("nvidia-h100", None, 1), runs=(StackRun("", "", ("x",)),)
    )


def test_the_first_cycle_of_a_new_minute_is_a_full_pass() -> None:
    queue = JobQueue(lambda spec: ("nvidia-h100",))
    at = datetime(2026, 3, 4, 10, 30, 1, tzinfo=UTC)

    def queued(job_id: str) -> None:
        queue.job_changed(Job(job_id, _spec(), JobState.QUEUED, at, at))

    queued("a")
    assert queue.candidates(at) == (["a"], True)
    queued("b")
    assert queue.candidates(at + timedelta(seconds=50)) == (["b"], False)  # same minute, nothing freed: the new one
    assert queue.candidates(at + timedelta(seconds=55)) == ([], False)
    assert queue.candidates(at + timedelta(seconds=60)) == (["a", "b"], True)  # 10:31: rule windows may have turned
    queue.capacity_changed()
    assert queue.candidates(at + timedelta(seconds=61)) == (["a", "b"], True)
