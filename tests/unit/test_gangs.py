"""Gang planning is a pure function over a snapshot of sites: each rule has a test."""

from __future__ import annotations

from gateway.gangs.plan import plan_gang
from gateway.jobs.model import Reason, Topology
from gateway.sites.model import Pool, SiteTerms, SiteView

from .test_placement import pool, site

H100 = "nvidia-h100"
TWO = Topology(max_sites=2, min_cards_per_site=1)


def parts(plan: object) -> list[tuple[str, int]]:
    return [(p.site, p.cards) for p in plan.parts]  # type: ignore[attr-defined]


def test_a_job_that_fits_one_site_gets_one_site_even_when_it_may_span() -> None:
    sites = [site("a", pool(H100, 8)), site("b", pool(H100, 8, free=4))]
    plan = plan_gang([H100], 4, TWO, sites)
    assert parts(plan) == [("b", 4)] and not plan.spans_sites


def test_a_job_that_may_not_span_waits_when_no_single_site_fits() -> None:
    sites = [site("a", pool(H100, 8, free=5)), site("b", pool(H100, 8, free=5))]
    plan = plan_gang([H100], 8, Topology(), sites)
    assert plan.parts == ()
    # 10 cards free in all, 5 at most at one site: a job held to one site is told its cards are only split.
    assert {r.code for r in plan.reasons} == {"NO_FREE_CAPACITY", "FRAGMENTED"}


def test_a_gang_splits_over_two_sites_when_no_single_site_fits() -> None:
    sites = [site("a", pool(H100, 8, free=5)), site("b", pool(H100, 8, free=5))]
    plan = plan_gang([H100], 8, TWO, sites)
    assert parts(plan) == [("a", 5), ("b", 3)]
    assert plan.spans_sites and plan.reasons[0].code == "GANG_PLANNED"
    assert all(p.accelerator_class == H100 for p in plan.parts)


def test_fewer_sites_win_over_tighter_packing() -> None:
    sites = [site("big1", pool(H100, 16, free=6)), site("big2", pool(H100, 16, free=6))]
    sites += [site(f"s{i}", pool(H100, 4)) for i in range(3)]  # three of these would fit exactly, but three
    plan = plan_gang([H100], 12, Topology(max_sites=3), sites)
    assert len(plan.parts) == 2 and {p.site for p in plan.parts} == {"big1", "big2"}


def test_the_tightest_pair_is_chosen_and_the_tightest_site_filled_first() -> None:
    sites = [site("roomy", pool(H100, 16)), site("snug", pool(H100, 8, free=6)), site("mid", pool(H100, 8))]
    plan = plan_gang([H100], 20, TWO, sites)
    # roomy+mid (24 free) leaves 4 idle; roomy+snug (22 free) leaves 2 idle: the tighter pair wins.
    assert sorted(parts(plan)) == [("roomy", 14), ("snug", 6)]


def test_every_part_gets_at_least_the_minimum_per_site() -> None:
    sites = [site("a", pool(H100, 16, free=14)), site("b", pool(H100, 8, free=8))]
    plan = plan_gang([H100], 16, Topology(max_sites=2, min_cards_per_site=4), sites)
    assert parts(plan) == [("a", 8), ("b", 8)]


def test_a_site_below_the_minimum_is_not_used_and_fragmentation_is_explained() -> None:
    sites = [site("a", pool(H100, 8, free=6)), site("b", pool(H100, 8, free=3))]
    plan = plan_gang([H100], 9, Topology(max_sites=2, min_cards_per_site=4), sites)
    assert plan.parts == ()
    (fragmented,) = [r for r in plan.reasons if r.code == "FRAGMENTATION"]
    assert "9 nvidia-h100 cards are free in total" in fragmented.message
    assert "at least 4 each" in fragmented.message


def test_too_many_sites_needed_is_fragmentation() -> None:
    sites = [site(n, pool(H100, 4)) for n in "abc"]
    plan = plan_gang([H100], 12, TWO, sites)
    assert plan.parts == () and any(r.code == "FRAGMENTATION" for r in plan.reasons)
    assert parts(plan_gang([H100], 12, Topology(max_sites=3), sites)) == [("a", 4), ("b", 4), ("c", 4)]


def test_not_enough_cards_anywhere_is_not_called_fragmentation() -> None:
    sites = [site("a", pool(H100, 4)), site("b", pool(H100, 4))]
    plan = plan_gang([H100], 12, TWO, sites)
    assert plan.parts == () and not any(r.code == "FRAGMENTATION" for r in plan.reasons)


def test_sites_the_policy_refuses_are_never_part_of_a_gang() -> None:
    sites = [site("a", pool(H100, 8)), site("b", pool(H100, 8)), site("eu", pool(H100, 8))]

    def allows(view: SiteView, cls: str) -> Reason | None:
        return Reason("policy", "RESIDENCY", "data stays out of b", view.name) if view.name == "b" else None

    plan = plan_gang([H100], 12, TWO, sites, allows)
    assert {p.site for p in plan.parts} == {"a", "eu"}


def test_sites_backing_off_are_skipped_with_a_reason() -> None:
    sites = [site("a", pool(H100, 8)), site("b", pool(H100, 8)), site("c", pool(H100, 4))]
    plan = plan_gang([H100], 12, TWO, sites, backing_off={"b"})
    assert {p.site for p in plan.parts} == {"a", "c"}
    plan = plan_gang([H100], 14, TWO, sites, backing_off={"b"})
    assert plan.parts == () and any(r.code == "SITE_BACKOFF" and r.site == "b" for r in plan.reasons)


def test_offline_draining_and_leased_cards_are_not_counted() -> None:
    sites = [
        site("off", pool(H100, 8), connected=False),
        site("drain", pool(H100, 8), draining=True),
        site("leased", pool(H100, 8), leased=((H100, 6),)),
        site("ok", pool(H100, 8)),
    ]
    plan = plan_gang([H100], 10, TWO, sites)
    assert sorted(parts(plan)) == [("leased", 2), ("ok", 8)]


def test_all_parts_are_one_class_and_the_class_order_breaks_ties() -> None:
    sites = [site("a", pool(H100, 4), pool("nvidia-h20", 4)), site("b", pool(H100, 4), pool("nvidia-h20", 4))]
    plan = plan_gang(["nvidia-h20", H100], 8, TWO, sites)
    assert {p.accelerator_class for p in plan.parts} == {"nvidia-h20"}
    plan = plan_gang([H100, "nvidia-h20"], 8, TWO, sites)
    assert {p.accelerator_class for p in plan.parts} == {H100}


def test_the_same_inputs_give_the_same_plan() -> None:
    sites = [site(n, pool(H100, 8, free=5)) for n in "edcba"]
    plans = {tuple(parts(plan_gang([H100], 9, Topology(max_sites=3), sites))) for _ in range(5)}
    plans.add(tuple(parts(plan_gang([H100], 9, Topology(max_sites=3), list(reversed(sites))))))
    assert plans == {(("a", 5), ("b", 4))}


def test_a_centres_size_limit_caps_its_part_not_the_whole_gang() -> None:
    limited = SiteView("b", True, False, (pool(H100, 8),), terms=SiteTerms(max_job_cards=4))

    def whole_job(view: SiteView, cls: str) -> Reason | None:  # what the terms say of all six cards at b
        return Reason("offers", "SITE_TERMS", "jobs of at most 4 cards", view.name) if view.name == "b" else None

    plan = plan_gang([H100], 6, TWO, [limited, site("c", pool(H100, 2))], whole_job, part_allows=lambda v, c: None)
    assert sorted(parts(plan)) == [("b", 4), ("c", 2)]


def test_a_stated_shape_splits_the_gang_in_whole_nodes() -> None:
    # 8 nodes of 4 cards, one task per node: a has 3 whole free nodes of 8 cards, b has 6; neither holds 8.
    sites = [site("a", pool(H100, 24)), site("b", pool(H100, 48))]
    plan = plan_gang([H100], 32, Topology(max_sites=2, min_cards_per_site=8), sites, nodes=8)
    # Each part at least 2 nodes (8 cards), the rest filling the tightest site first.
    assert [(p.site, p.cards, p.nodes) for p in plan.parts] == [("a", 12, 3), ("b", 20, 5)]
    assert "20 on b (5 nodes)" in plan.reasons[0].message
    # Without the stated shape the same cards are 4 whole nodes of 8, which b holds alone.
    plan = plan_gang([H100], 32, Topology(max_sites=2, min_cards_per_site=8), sites)
    assert [(p.site, p.cards) for p in plan.parts] == [("b", 32)]


def test_a_stated_shape_counts_only_nodes_free_whole_and_explains_in_nodes() -> None:
    # Each site has 12 cards free but only one whole node of 8 (the other 4 on a partly used node).
    partly = Pool(H100, 16, 16, 12, 8, free_nodes=1, largest_partial_free=4)
    sites = [site("a", partly), site("b", partly), site("c", partly)]
    plan = plan_gang([H100], 24, Topology(max_sites=2), sites, nodes=3)
    assert plan.parts == ()
    (fragmentation,) = [r for r in plan.reasons if r.code == "FRAGMENTATION"]
    assert "3 nvidia-h100 nodes for 8 cards each are free in total" in fragmentation.message
    plan = plan_gang([H100], 24, Topology(max_sites=3), sites, nodes=3)
    assert [(p.site, p.cards, p.nodes) for p in plan.parts] == [("a", 8, 0), ("b", 8, 0), ("c", 8, 0)]
