"""Properties of placement, gang planning and the two-phase coordinator over random federations: nothing is
ever placed beyond a site's free offered cards or where the policy refuses, and every gang ends either fully
held (then dispatched to every part with one epoch) or with nothing held anywhere, whatever the sites answer."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.gangs.coordinator import RESERVE_TIMEOUT
from gateway.gangs.plan import plan_gang
from gateway.jobs.model import JobState, Reason, Topology
from gateway.placement.place import place
from gateway.sites.model import Pool, SiteView

from .gangworld import FakeSite, GangWorld

SETTINGS = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
CLASSES = ("nvidia-h100", "ascend-910b")


@st.composite
def federations(draw: st.DrawFn) -> tuple[list[SiteView], frozenset[tuple[str, str]]]:
    """Random sites (some offline or draining, some with leases) and the (site, class) options refused."""
    sites = []
    for i in range(draw(st.integers(0, 7))):
        pools = []
        for cls in draw(st.lists(st.sampled_from(CLASSES), max_size=2, unique=True)):
            offered = draw(st.integers(0, 16))
            pools.append(Pool(cls, offered + draw(st.integers(0, 4)), offered, draw(st.integers(0, offered)), 8))
        leased = tuple((p.accelerator_class, draw(st.integers(0, p.offered))) for p in pools if draw(st.booleans()))
        sites.append(
            SiteView(f"s{i}", draw(st.booleans()) or i < 2, draw(st.integers(0, 4)) == 0, tuple(pools), leased)
        )
    options = [(s.name, p.accelerator_class) for s in sites for p in s.pools]
    refused = frozenset(draw(st.lists(st.sampled_from(options), unique=True)) if options else [])
    return sites, refused


def _allows(refused: frozenset[tuple[str, str]]):  # type: ignore[no-untyped-def]
    def allows(site: SiteView, cls: str) -> Reason | None:
        return Reason("policy", "RESIDENCY", "refused", site.name) if (site.name, cls) in refused else None

    return allows


def _free(site: SiteView, cls: str) -> int:
    return sum(site.free_cards(p) for p in site.pools if p.accelerator_class == cls)


@SETTINGS
@given(
    federations(),
    st.lists(st.sampled_from(CLASSES), min_size=1, max_size=2, unique=True),
    st.integers(1, 40),
    st.integers(1, 4),
    st.integers(0, 8),
)
def test_placement_and_gang_plans_never_overcommit_nor_go_where_the_policy_refuses(
    federation: tuple[list[SiteView], frozenset[tuple[str, str]]],
    classes: list[str],
    cards: int,
    max_sites: int,
    minimum: int,
) -> None:
    sites, refused = federation
    by_name = {s.name: s for s in sites}
    allows = _allows(refused)
    single = place(classes, cards, sites, allows)
    if single.placement is not None:
        p = single.placement
        assert p.cards == cards <= _free(by_name[p.site], p.accelerator_class)
        assert (p.site, p.accelerator_class) not in refused
    topology = Topology(max_sites, min(minimum, cards))
    plan = plan_gang(classes, cards, topology, sites, allows)
    if not plan.parts:
        assert single.placement is None
        return
    assert sum(p.cards for p in plan.parts) == cards
    assert len(plan.parts) <= max(1, max_sites)
    assert len({p.site for p in plan.parts}) == len(plan.parts)
    assert len({p.accelerator_class for p in plan.parts}) == 1
    for p in plan.parts:
        view = by_name[p.site]
        assert view.connected and not view.draining
        assert (p.site, p.accelerator_class) not in refused
        assert 1 <= p.cards <= _free(view, p.accelerator_class)
        if len(plan.parts) > 1:
            assert p.cards >= max(1, topology.min_cards_per_site)


behaviours = st.sampled_from(["accept", "accept", "refuse", "silent"])
steps = st.lists(st.sampled_from(["run", "tick", "disconnect", "submit"]), min_size=1, max_size=12)


@SETTINGS
@given(
    st.lists(st.tuples(st.integers(1, 12), behaviours), min_size=2, max_size=4),
    st.lists(st.tuples(st.integers(2, 24), st.integers(1, 3)), min_size=1, max_size=3),
    steps,
    st.randoms(use_true_random=False),
)
def test_every_gang_is_fully_held_and_dispatched_or_holds_nothing_anywhere(
    site_specs: list[tuple[int, str]], jobs: list[tuple[int, int]], plan: list[str], rnd: object
) -> None:
    asyncio.run(_coordinator_scenario(site_specs, jobs, plan, rnd))


async def _coordinator_scenario(
    site_specs: list[tuple[int, str]], jobs: list[tuple[int, int]], plan: list[str], rnd: object
) -> None:
    sites = [
        FakeSite(f"s{i}", cards, refuse="site policy: no" if how == "refuse" else "", silent=how == "silent")
        for i, (cards, how) in enumerate(site_specs)
    ]
    w = GangWorld(sites)
    ids = [(await w.submit(cards, max_sites)).job_id for cards, max_sites in jobs]
    for step in plan:
        if step == "run":
            w.run()
        elif step == "tick":
            w.clock.advance(RESERVE_TIMEOUT.total_seconds())
            w.run()
        elif step == "disconnect":
            name = rnd.choice(sorted(w.sites))  # type: ignore[attr-defined]
            w.disconnect(name)
        else:
            ids.append((await w.submit(jobs[0][0], jobs[0][1])).job_id)
        _check_no_overcommit(w)
        if step in {"run", "tick"}:  # quiescent: the sites have done what they were told
            _check_queued_gangs_hold_nothing(w, ids)
    # Let every outstanding reservation finish: the silent sites leave (a gang waiting on one fails at once),
    # then their holds lapse.
    w.run()
    for site in w.sites.values():
        if site.silent and w.connected(site.name):
            w.disconnect(site.name)
    w.run()
    w.clock.advance(RESERVE_TIMEOUT.total_seconds())
    w.run()
    for job_id in ids:
        job = w.job(job_id)
        assert job.state in {JobState.QUEUED, JobState.DISPATCHED}, job.state
        assert w.holders(job_id) == {}, (job.state, w.holders(job_id))
        if job.state is JobState.DISPATCHED:
            for part in job.placements:
                if w.connected(part.site):  # a site that left gets the launch again when it reconnects
                    assert w.sites[part.site].launched.get((job_id, job.epoch)) == part.cards
        else:
            assert not any(k[0] == job_id for s in w.sites.values() for k in s.launched)
    _check_no_overcommit(w)


def _check_queued_gangs_hold_nothing(w: GangWorld, ids: list[str]) -> None:
    """A gang sent back to the queue was aborted everywhere at once, not left to expire (sites that left
    cannot hear the Abort: their holds lapse by themselves)."""
    for job_id in ids:
        if w.state(job_id) is JobState.QUEUED:
            assert {s: n for s, n in w.holders(job_id).items() if w.connected(s)} == {}


def _check_no_overcommit(w: GangWorld) -> None:
    for name, leased in w.fed.usage.leases().items():
        assert sum(leased.values()) <= w.sites[name].cards
    for site in w.sites.values():
        assert site.held() + sum(site.launched.values()) <= site.cards
