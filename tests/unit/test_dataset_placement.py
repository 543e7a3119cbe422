"""A one-site job that names a dataset runs near it among the sites where it fits now (its own site first,
then the shortest copy), far away only when that is all that fits, and says so (DATASET_TRANSFER); jobs that
name none are placed exactly as before, in `place`, in the cycle cache and through the scheduler."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from gateway.app.config import REPO_POLICIES
from gateway.jobs.model import JobSpec, Placement, Resources, StackRun
from gateway.placement.place import place
from gateway.policy import load_catalogue, load_policy
from gateway.policy.quotas import Usage
from gateway.scheduler.cyclecache import CycleCache
from gateway.sites.model import Pool, SiteView

from .schedworld import World
from .test_placement import pool, site

H100 = "nvidia-h100"
POLICY = load_policy(REPO_POLICIES / "federation.yaml")  # web-zh (2000 GB) on centre-a, eval-suite (40 GB) on b
WEB = POLICY.network.source("web-zh")
EVAL = POLICY.network.source("eval-suite")
NOW = datetime(2026, 3, 4, 10, 30, tzinfo=UTC)


def reasons(decision: object) -> dict[str, str]:
    return {r.code: r.message for r in decision.reasons}  # type: ignore[attr-defined]


def test_the_datasets_own_site_wins_over_a_tighter_fit() -> None:
    sites = [site("centre-a", pool(H100, 16)), site("centre-b", pool(H100, 4))]
    assert place([H100], 4, sites).placement == Placement("centre-b", H100, 4)  # best fit, without a dataset
    decision = place([H100], 4, sites, source=WEB)
    assert decision.placement == Placement("centre-a", H100, 4)
    assert reasons(decision)["DATASET_TRANSFER"] == (
        "dataset web-zh (2000 GB) is on centre-a, where the job runs: no transfer"
    )


def test_a_job_that_fits_only_far_away_runs_there_with_the_estimate() -> None:
    sites = [site("centre-a", pool(H100, 16, free=2)), site("centre-b", pool(H100, 8)), site("centre-c", pool(H100, 4))]
    decision = place([H100], 4, sites, source=WEB)
    # Both b and c are 10 Gb/s from a; b (28 ms) is the shorter copy by a hair, within the minute: best fit, c.
    assert decision.placement == Placement("centre-c", H100, 4)
    assert reasons(decision)["DATASET_TRANSFER"] == (
        "dataset web-zh (2000 GB) is on centre-a; placed on centre-c, estimated transfer 26 min 40 s over "
        "10 Gb/s, 30 ms (centre-a has no room for the job now; the transfer is shorter than an unknown wait)"
    )


def test_a_much_shorter_copy_wins_over_a_better_fit() -> None:
    # eval-suite lives on centre-b, which is full; c is 100 Gb/s from b (3 s), a is 10 Gb/s (32 s), both within
    # the minute: best fit. Make the dataset big enough and only c is near.
    sites = [site("centre-a", pool(H100, 4)), site("centre-b", pool(H100, 8, free=0)), site("centre-c", pool(H100, 16))]
    assert place([H100], 4, sites, source=EVAL).placement == Placement("centre-a", H100, 4)  # near alike: best fit
    assert EVAL is not None
    source = replace(EVAL, dataset=replace(EVAL.dataset, size_gb=4000))  # c: 5 min 20 s, a: 53 min 20 s
    assert source.transfer_s("centre-c") < 600 < source.transfer_s("centre-a")
    decision = place([H100], 4, sites, source=source)
    assert decision.placement == Placement("centre-c", H100, 4)
    assert "estimated transfer 5 min 20 s over 100 Gb/s, 2 ms" in reasons(decision)["DATASET_TRANSFER"]


def _views(rng: random.Random) -> dict[str, SiteView]:
    names = ("centre-a", "centre-b", "centre-c", "centre-d", "centre-e")
    return {
        name: SiteView(name, rng.random() > 0.1, False, (Pool(H100, n, n, rng.randint(0, n), 8),))
        for name in names
        if (n := rng.choice((4, 8, 16, 32)))
    }


def _spec(cards: int, dataset: str = "") -> JobSpec:
    return JobSpec("deepsea-ai", "llama-sft", Resources(H100, None, cards), (StackRun("", "img", ()),), dataset=dataset)


def test_the_cycle_cache_places_a_dataset_job_where_place_would() -> None:
    rng = random.Random(17)
    catalogue = load_catalogue(REPO_POLICIES / "accelerators.yaml")
    for _ in range(300):
        views, cards = _views(rng), rng.choice((1, 2, 4, 8))
        source = rng.choice((WEB, EVAL))
        assert source is not None
        usage = Usage(defaultdict(int), {}, {H100: 64})
        cycle = CycleCache(views, defaultdict(lambda: defaultdict(int)), usage, POLICY, catalogue, NOW)
        spec = _spec(cards, source.dataset.name)
        expected = place([H100], cards, list(views.values()), source=source)
        found = cycle.place_near(spec, (H100,), source)
        if expected.placement is None:
            assert found is None
        else:
            assert found is not None and found[0] == expected.placement and found[1] == expected.reasons


def _without_network(tmp_path: Path, replacement: str) -> Path:
    text = (REPO_POLICIES / "federation.yaml").read_text()
    path = tmp_path / f"federation-{len(replacement)}.yaml"
    path.write_text(text[: text.index("\nnetwork:\n")] + "\n" + replacement)
    return path


def test_jobs_without_a_dataset_are_placed_alike_with_or_without_a_network(tmp_path: Path) -> None:
    """Seeded runs of the real scheduler: the same sites and jobs give the same placements under the policy with
    no network section, an empty one, and the demo's links and datasets."""
    policies = [
        _without_network(tmp_path, ""),
        _without_network(tmp_path, "network: {links: [], datasets: {}}\n"),
        REPO_POLICIES / "federation.yaml",
    ]
    for seed in range(3):
        runs = []
        for policy in policies:
            rng, world = random.Random(seed), World(policy)
            for name in ("centre-a", "centre-b", "centre-c", "centre-d"):
                world.site(name, rng.choice((8, 16, 32)))
            jobs = [world.submit(rng.choice((1, 2, 4, 8, 12))) for _ in range(20)]
            world.cycle()
            runs.append([(j, world.job(j).state, tuple(world.job(j).placements)) for j in jobs])
        assert runs[0] == runs[1] == runs[2]


def test_the_scheduler_runs_a_dataset_job_at_its_datasets_site_and_explain_says_why() -> None:
    world = World()
    world.site("centre-a", 16)
    world.site("centre-b", 4)
    near, plain = world.submit(4, dataset="web-zh"), world.submit(4)
    world.cycle()
    assert world.job(near).placements[0].site == "centre-a"
    assert world.job(plain).placements[0].site == "centre-b"
    said = {r.code: r.message for r in world.job(near).reasons}
    assert said["DATASET_TRANSFER"] == "dataset web-zh (2000 GB) is on centre-a, where the job runs: no transfer"
    assert "DATASET_TRANSFER" not in {r.code for r in world.job(plain).reasons}


def test_a_queued_dataset_job_is_explained_with_its_transfer() -> None:
    world = World()
    world.site("centre-b", 8)
    waiting = world.submit(8, dataset="web-zh")  # centre-a is not connected: only far away fits
    assert "estimated transfer 26 min 40 s" in world.reasons(waiting)["DATASET_TRANSFER"]
    world.cycle()
    assert world.job(waiting).placements[0].site == "centre-b"


def test_a_site_as_near_as_the_datasets_own_may_win_on_fit() -> None:
    # eval-suite (40 GB) is on centre-b; centre-c is 3 s away at 100 Gb/s and fits exactly: equally near.
    sites = [site("centre-b", pool(H100, 16)), site("centre-c", pool(H100, 4))]
    decision = place([H100], 4, sites, source=EVAL)
    assert decision.placement == Placement("centre-c", H100, 4)
    assert reasons(decision)["DATASET_TRANSFER"] == (
        "dataset eval-suite (40 GB) is on centre-b; placed on centre-c, estimated transfer 3 s over 100 Gb/s, 2 ms "
        "(as near as running at centre-b, within 60 s; best fit chose centre-c)"
    )
