"""Placement by node shape: a job lands only where its cards are free as the nodes it needs. Rules first, then
properties over random sites described node by node (what each node has free), whose reports are derived the
way an agent derives them; the placement and gang plans are then checked against the nodes themselves."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedgate.common.reasons import ReasonCode
from gateway.gangs.plan import plan_gang
from gateway.jobs.model import JobState, Reason, Topology
from gateway.placement.place import place
from gateway.sites.model import Pool, SiteView

from .schedworld import World

H100 = "nvidia-h100"
SETTINGS = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def reported(site: str, per_node: int, free_by_node: list[int], *, said: bool = True) -> SiteView:
    """A site whose H100 nodes of `per_node` cards have these many cards free each, as its agent reports it
    (`said` False: an agent older than node shapes, which reports free cards only)."""
    free = sum(free_by_node)
    total = per_node * len(free_by_node)
    whole = sum(1 for n in free_by_node if n == per_node)
    partial = max((n for n in free_by_node if n < per_node), default=0)
    pool = Pool(H100, total, total, free, per_node, free_nodes=whole if said else None, largest_partial_free=partial)
    return SiteView(site, True, False, (pool,))


def codes(reasons: tuple[Reason, ...]) -> set[str]:
    return {r.code for r in reasons}


def test_a_multi_node_job_needs_whole_free_nodes_not_just_free_cards() -> None:
    scattered = reported("scattered", 8, [4, 4, 4, 4])  # 16 cards free, no node whole
    decision = place([H100], 16, [scattered])
    assert decision.placement is None
    shape = [r for r in decision.reasons if r.code == ReasonCode.NODE_SHAPE]
    assert len(shape) == 1
    assert shape[0].site == "scattered"
    assert "0 whole free nodes" in shape[0].message and "2 whole free nodes (8 cards each)" in shape[0].message
    whole = reported("whole", 8, [8, 8, 0, 0])
    decision = place([H100], 16, [scattered, whole])
    assert decision.placement is not None and decision.placement.site == "whole"


def test_a_job_of_one_node_or_less_needs_one_node_with_that_many_free() -> None:
    assert place([H100], 6, [reported("a", 8, [5, 5, 5])]).placement is None  # 15 free, never 6 on one node
    assert place([H100], 5, [reported("a", 8, [5, 5, 5])]).placement is not None
    assert place([H100], 8, [reported("a", 8, [7, 7, 8])]).placement is not None  # a whole node is one node


def test_a_stated_shape_needs_exactly_that_many_whole_nodes() -> None:
    two_whole = reported("a", 8, [8, 8, 0, 0])
    assert place([H100], 8, [two_whole], nodes=2).placement is not None  # 4 cards on each of 2 whole nodes
    assert place([H100], 8, [two_whole], nodes=4).placement is None  # 4 whole nodes asked, 2 free
    assert place([H100], 16, [two_whole], nodes=1).placement is None  # 16 on one node of 8: never
    refused = place([H100], 16, [two_whole], nodes=1).reasons
    assert ReasonCode.NODE_SHAPE in codes(refused)


def test_an_agent_that_does_not_report_nodes_counts_its_free_cards_as_whole_nodes() -> None:
    old = reported("old", 8, [4, 4, 4, 4], said=False)  # says 16 free: assumed 2 whole nodes
    assert place([H100], 16, [old]).placement is not None
    leased = SiteView("old", True, False, old.pools, (("nvidia-h100", 20),))  # 32 - 20: 12 placeable, 1 whole
    assert place([H100], 12, [leased]).placement is None
    assert place([H100], 8, [leased]).placement is not None


def test_a_pool_without_cards_per_node_is_judged_by_cards_alone() -> None:
    pool = Pool(H100, 32, 32, 20, 0)
    assert place([H100], 20, [SiteView("flat", True, False, (pool,))], nodes=5).placement is not None


def test_a_gang_part_never_takes_more_than_its_sites_whole_free_nodes() -> None:
    a = reported("a", 8, [8, 8, 3, 3])  # 22 free, 16 as whole nodes
    b = reported("b", 8, [8, 5, 5, 5])  # 23 free, 8 as whole nodes
    plan = plan_gang([H100], 24, Topology(max_sites=2), [a, b])
    assert sorted((p.site, p.cards) for p in plan.parts) == [("a", 16), ("b", 8)]
    assert not plan_gang([H100], 25, Topology(max_sites=2), [a, b]).parts


# ---- properties ---------------------------------------------------------------------------------------------


@st.composite
def node_sites(draw: st.DrawFn) -> list[tuple[SiteView, int, list[int]]]:
    """Random sites, each with its per-node size and each node's free cards; some agents say no nodes."""
    sites = []
    for i in range(draw(st.integers(1, 5))):
        per_node = draw(st.sampled_from((1, 2, 4, 8)))
        free = draw(st.lists(st.integers(0, per_node), min_size=1, max_size=6))
        said = draw(st.booleans())
        if not said:  # an old agent's free cards: the gateway assumes them whole, so describe them so
            cards = sum(free)
            free = [per_node] * (cards // per_node) + ([cards % per_node] if cards % per_node else [])
            free += [0] * max(0, 6 - len(free))
        sites.append((reported(f"s{i}", per_node, free, said=said), per_node, free))
    return sites


def _fits_on_nodes(cards: int, nodes: int, per_node: int, free: list[int]) -> bool:
    """Whether the job's processes can be laid on these nodes: the ground truth, from the nodes themselves."""
    if nodes >= 2 or (nodes == 0 and cards > per_node):
        count = nodes or -(-cards // per_node)
        if cards // count > per_node:
            return False
        return sum(1 for n in free if n == per_node) >= count  # whole nodes, one process group on each
    return cards <= per_node and any(n >= cards for n in free)


@SETTINGS
@given(node_sites(), st.integers(1, 40), st.sampled_from((0, 0, 1, 2, 3, 4, 8)))
def test_a_job_never_lands_where_its_node_shape_cannot_fit(
    sites: list[tuple[SiteView, int, list[int]]], cards: int, nodes: int
) -> None:
    if nodes and cards % nodes:
        nodes = 0  # the validator refuses such a job before placement sees it
    views = [view for view, _, _ in sites]
    decision = place([H100], cards, views, nodes=nodes)
    truth = {view.name: _fits_on_nodes(cards, nodes, per_node, free) for view, per_node, free in sites}
    if decision.placement is not None:
        assert truth[decision.placement.site], (decision.placement, sites)
    else:
        assert not any(truth.values()), sites  # and nothing that fits was turned down
        refused_by_shape = {r.site for r in decision.reasons if r.code == ReasonCode.NODE_SHAPE}
        holding = {view.name for view in views if view.free_cards(view.pools[0]) >= cards}
        assert refused_by_shape == holding  # cards there, not as nodes: said so, for each such site


@SETTINGS
@given(node_sites(), st.integers(2, 60), st.integers(2, 3))
def test_every_part_of_a_gang_fits_its_sites_node_shape(
    sites: list[tuple[SiteView, int, list[int]]], cards: int, max_sites: int
) -> None:
    views = [view for view, _, _ in sites]
    plan = plan_gang([H100], cards, Topology(max_sites=max_sites), views)
    shape = {view.name: (per_node, free) for view, per_node, free in sites}
    assert sum(p.cards for p in plan.parts) in (0, cards)
    for part in plan.parts:
        per_node, free = shape[part.site]
        assert _fits_on_nodes(part.cards, 0, per_node, free), (part, shape[part.site])


# ---- through the gateway's cycle and explain ------------------------------------------------------------------


def test_the_cycle_holds_a_job_until_its_nodes_are_free_and_explain_says_node_shape_meanwhile() -> None:
    world = World()
    world.site("a", 16)
    world.fed.registry.report(
        "a", [Pool(H100, 32, 32, 16, 8, free_nodes=1, largest_partial_free=4)], True, world.now
    )  # 16 cards free: one whole node and parts of others
    big = world.submit(16)
    world.cycle()
    assert world.state(big) == JobState.QUEUED
    assert world.explained(big).get(ReasonCode.NODE_SHAPE) == "capacity"
    message = world.reasons(big)[ReasonCode.NODE_SHAPE]
    assert message.startswith("a has 16 nvidia-h100 cards free but 1 whole free nodes of 8")
    assert message.endswith("the job needs 2 whole free nodes (8 cards each)")
    world.fed.registry.report("a", [Pool(H100, 32, 32, 16, 8, free_nodes=2)], True, world.now)  # nodes freed
    world.periodic_cycle()
    assert world.state(big) == JobState.DISPATCHED


def test_cards_placed_since_the_report_leave_the_rest_of_their_node_usable() -> None:
    pool = Pool(H100, 2, 2, 2, 2, free_nodes=1)  # one node of 2 cards, all free
    after_one = SiteView("a", True, False, (pool,), ((H100, 1),))  # a 1-card job placed since the report
    assert place([H100], 1, [after_one]).placement is not None  # the node's other card
    assert place([H100], 2, [SiteView("a", True, False, (pool,), ((H100, 1),))]).placement is None
    wide = Pool(H100, 32, 32, 32, 8, free_nodes=4)
    # 12 cards placed since the report, nodes unknown: at worst each spoilt a whole node, leaving 5 on each of 4
    after_twelve = SiteView("b", True, False, (wide,), ((H100, 12),))
    assert place([H100], 5, [after_twelve]).placement is not None
    assert place([H100], 6, [after_twelve]).placement is None
    assert place([H100], 16, [SiteView("b", True, False, (wide,), ((H100, 8),))]).placement is None  # until reported
