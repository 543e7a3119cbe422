"""The cycle cache's own contract: what a dispatch takes, what a release gives back, and that a shape found to
fit nowhere is looked at again only after cards come back."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime

from gateway.app.config import REPO_POLICIES
from gateway.jobs.model import JobSpec, Placement, Resources, StackRun
from gateway.policy import load_catalogue, load_policy
from gateway.policy.quotas import Usage
from gateway.scheduler.cyclecache import CycleCache
from gateway.sites.model import Pool, SiteTerms, SiteView

NOW = datetime(2026, 3, 4, 10, 30, tzinfo=UTC)
H100 = ("nvidia-h100",)


def job(cards: int) -> JobSpec:
    return JobSpec("deepsea-ai", "llama-sft", Resources("nvidia-h100", None, cards), (StackRun("", "img", ()),))


def cache(*offered: int) -> tuple[CycleCache, dict[str, dict[str, int]], Usage]:
    """Sites offering these numbers of H100 cards, all free, nothing leased yet."""
    views = {f"s{i}": SiteView(f"s{i}", True, False, (Pool("nvidia-h100", n, n, n, 8),)) for i, n in enumerate(offered)}
    leases: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    usage = Usage(defaultdict(int), {}, {"nvidia-h100": sum(offered)})
    catalogue = load_catalogue(REPO_POLICIES / "accelerators.yaml")
    policy = load_policy(REPO_POLICIES / "federation.yaml")
    return CycleCache(views, leases, usage, policy, catalogue, NOW), leases, usage


def test_a_dispatch_takes_cards_from_the_site_and_adds_to_the_tenants_usage() -> None:
    cycle, leases, usage = cache(8, 4)
    placement = cycle.place(job(4), H100)
    assert placement == Placement("s1", "nvidia-h100", 4)  # best fit: the site left with no idle cards
    cycle.take(job(4), placement)
    assert leases["s1"]["nvidia-h100"] == 4 and usage.held[("deepsea-ai", "llama-sft", "nvidia-h100")] == 4
    assert cycle.index.free("s1", "nvidia-h100") == 0
    assert cycle.view("s1").leased == (("nvidia-h100", 4),)


def test_a_shape_that_fit_nowhere_is_looked_at_again_once_cards_come_back() -> None:
    cycle, _, _ = cache(4, 4)
    first = cycle.place(job(4), H100)
    assert first is not None
    cycle.take(job(4), first)
    second = cycle.place(job(4), H100)
    assert second is not None
    cycle.take(job(4), second)
    assert cycle.place(job(4), H100) is None  # both sites full: this shape now fits nowhere this cycle
    cycle.release(job(4), first)  # a hook gives cards back mid-cycle
    assert cycle.place(job(4), H100) == first


def test_a_shape_that_fit_nowhere_is_looked_at_again_when_a_hold_lets_go_of_a_pool() -> None:
    cycle, _, _ = cache(8, 4)
    refusing = replace(cycle.view("s0"), terms=SiteTerms(max_job_cards=2))  # 8 free, but not for this job
    cycle = CycleCache(
        {"s0": refusing, "s1": cycle.view("s1")},
        defaultdict(lambda: defaultdict(int)),
        Usage(defaultdict(int), {}, {"nvidia-h100": 12}),
        load_policy(REPO_POLICIES / "federation.yaml"),
        load_catalogue(REPO_POLICIES / "accelerators.yaml"),
        NOW,
    )
    site = cycle.view("s1")
    cycle.index.update(replace(site, pools=(replace(site.pools[0], free=0),)))  # a hold keeps s1's pool
    assert cycle.place(job(4), H100) is None  # s0 refuses it, s1 is held: its shape fits nowhere now
    cycle.index.update(site)  # the hold's job went elsewhere: gateway.scheduler.cycleplan gives the pool back
    assert cycle.place(job(4), H100) == Placement("s1", "nvidia-h100", 4)


def test_the_free_index_counts_only_growth() -> None:
    cycle, _, _ = cache(4)
    index, site = cycle.index, cycle.view("s0")
    before = index.grown
    index.update(replace(site, pools=(replace(site.pools[0], free=1),)))
    index.set_free("s0", "nvidia-h100", 0)
    assert index.grown == before  # shrinking, and a dispatch, are not growth
    index.update(site)
    assert index.grown == before + 1
