"""A gang over several centres prefers the best-connected set of the fewest sites, and says so (GANG_LINKS,
GANG_THIN_LINK); without a network section in the policy, plans are exactly as before."""

from __future__ import annotations

import itertools
import random
import types

from gateway.gangs.plan import MAX_GANG_CANDIDATES, plan_gang
from gateway.jobs.model import Topology
from gateway.policy.network import Link, Network

from .test_placement import pool, site

H100 = "nvidia-h100"
TWO = Topology(max_sites=2, min_cards_per_site=1)


def network(*links: tuple[str, str, float, float], default: Link | None = None) -> Network:
    stated = {tuple(sorted((a, b))): Link(bw, ms) for a, b, bw, ms in links}
    return Network(types.MappingProxyType(stated), default)  # type: ignore[arg-type]


def codes(plan: object) -> dict[str, str]:
    return {r.code: r.message for r in plan.reasons}  # type: ignore[attr-defined]


# a, b and c have 5 free each: any two of them hold an 8-card gang; a+b is the tightest pair by name.
SITES = [site("a", pool(H100, 8, free=5)), site("b", pool(H100, 8, free=5)), site("c", pool(H100, 8, free=5))]


def test_between_two_equal_pairs_the_better_linked_wins() -> None:
    links = network(("a", "b", 10, 30), ("b", "c", 100, 2), ("a", "c", 10, 28))
    plan = plan_gang([H100], 8, TWO, SITES, network=links)
    assert {p.site for p in plan.parts} == {"b", "c"}
    said = codes(plan)
    assert said["GANG_LINKS"] == (
        "parts on b and c: linked at 100 Gb/s, 2 ms (the best-connected set of 2 that fits; "
        "the next best crosses a-c at 10 Gb/s, 28 ms)"
    )
    assert "GANG_PLANNED" in said and "GANG_THIN_LINK" not in said


def test_fewer_sites_still_come_before_better_links() -> None:
    sites = [site("big1", pool(H100, 16, free=6)), site("big2", pool(H100, 16, free=6))]
    sites += [site(f"s{i}", pool(H100, 4)) for i in range(3)]
    fast = network(("s0", "s1", 400, 1), ("s0", "s2", 400, 1), ("s1", "s2", 400, 1), ("big1", "big2", 1, 80))
    plan = plan_gang([H100], 12, Topology(max_sites=3), sites, network=fast)
    assert {p.site for p in plan.parts} == {"big1", "big2"}
    assert "GANG_THIN_LINK" in codes(plan) and "big1-big2 at 1 Gb/s, 80 ms" in codes(plan)["GANG_THIN_LINK"]


def test_equal_links_fall_back_to_the_tightest_set() -> None:
    sites = [site("roomy", pool(H100, 16)), site("snug", pool(H100, 8, free=6)), site("mid", pool(H100, 8))]
    plan = plan_gang([H100], 20, TWO, sites, network=network(default=Link(100, 2)))
    assert sorted((p.site, p.cards) for p in plan.parts) == [("roomy", 14), ("snug", 6)]  # as without links


def test_latency_breaks_a_tie_in_bandwidth() -> None:
    links = network(("a", "b", 100, 9), ("b", "c", 100, 3), ("a", "c", 100, 5))
    assert {p.site for p in plan_gang([H100], 8, TWO, SITES, network=links).parts} == {"b", "c"}


def test_a_set_of_three_ranks_by_its_weakest_link() -> None:
    sites = [site(n, pool(H100, 8, free=4)) for n in "abcd"]
    # a-b-c are joined at 100 Gb/s but for a-c at 40; b-c-d all at 50: b,c,d's weakest (50) beats a,b,c's (40).
    links = network(
        ("a", "b", 100, 1), ("b", "c", 100, 1), ("a", "c", 40, 1), ("b", "d", 50, 1), ("c", "d", 50, 1),
        default=Link(10, 10),
    )  # fmt: skip
    plan = plan_gang([H100], 12, Topology(max_sites=3), sites, network=links)
    assert {p.site for p in plan.parts} == {"b", "c", "d"}
    assert codes(plan)["GANG_LINKS"].startswith("parts on b, c and d: weakest link b-d at 50 Gb/s, 1 ms")


def test_an_unknown_link_is_weighed_as_the_worst_and_said_to_be_unknown() -> None:
    links = network(("a", "b", 10, 30))  # b-c and a-c are unknown: weighed as 10 Gb/s, 30 ms, like a-b
    plan = plan_gang([H100], 8, TWO, SITES, network=links)
    assert {p.site for p in plan.parts} == {"a", "b"}  # a tie on links: the tightest, then names
    stated_only = network(("a", "b", 10, 30), ("a", "c", 25, 5))
    plan = plan_gang([H100], 8, TWO, [SITES[1], SITES[2]], network=stated_only)  # only b and c: unknown
    said = codes(plan)
    assert "linked at unknown (no link stated; weighed as the worst stated, 10 Gb/s, 30 ms)" in said["GANG_LINKS"]
    assert said["GANG_THIN_LINK"].startswith("the gang crosses b-c, a link the policy does not state")
    assert said["GANG_THIN_LINK"].endswith("it runs anyway")


def test_a_thin_link_still_runs_and_says_which_link_it_crosses() -> None:
    plan = plan_gang([H100], 8, TWO, SITES[:2], network=network(("a", "b", 10, 30)))
    assert len(plan.parts) == 2
    assert codes(plan)["GANG_THIN_LINK"] == (
        "the gang crosses a thin link, a-b at 10 Gb/s, 30 ms: its collectives will be slow; it runs anyway"
    )


def test_one_site_plans_say_nothing_about_links() -> None:
    plan = plan_gang([H100], 4, TWO, SITES, network=network(("a", "b", 10, 30)))
    assert len(plan.parts) == 1 and not {"GANG_LINKS", "GANG_THIN_LINK"} & set(codes(plan))


def test_without_a_network_plans_are_unchanged() -> None:
    """Seeded federations: the same plan (parts and reasons) with no network and with an empty one; links that
    are all equal change only the reasons, never the parts."""
    rng = random.Random(17)
    equal = network(default=Link(100, 2))
    for _ in range(200):
        sites = [site(f"s{i}", pool(H100, 16, free=rng.randint(0, 16))) for i in range(rng.randint(2, 7))]
        cards, topology = (
            rng.randint(4, 40),
            Topology(max_sites=rng.randint(1, 4), min_cards_per_site=rng.randint(1, 4)),
        )
        before = plan_gang([H100], cards, topology, sites)
        assert plan_gang([H100], cards, topology, sites, network=Network()) == before
        assert plan_gang([H100], cards, topology, sites, network=equal).parts == before.parts


def test_the_choice_is_deterministic_and_the_search_stays_bounded() -> None:
    names = [f"s{i:02d}" for i in range(30)]
    sites = [site(n, pool(H100, 8, free=5)) for n in names]
    links = network(
        *((a, b, float(1 + (i * 7) % 13), 1.0) for i, (a, b) in enumerate(itertools.combinations(names, 2)))
    )
    plans = {plan_gang([H100], 15, Topology(max_sites=4), sites, network=links).parts for _ in range(3)}
    assert len(plans) == 1
    (parts,) = plans
    assert len(parts) == 3
    # Only the MAX_GANG_CANDIDATES largest blocks (ties by name) are weighed, links or not.
    assert {p.site for p in parts} <= set(names[:MAX_GANG_CANDIDATES])
