"""Gang planning: how a job that may span sites splits its cards over a few of them, now.

Owns: the pure choice of a gang's parts from a snapshot of sites. One site first (the plain `place`); when no
single site fits and the job allows `max_sites > 1`, the fewest sites (at most `max_sites`) of one class that
together hold the job, each part at least `min_cards_per_site` (never below 1), packed tightly (the chosen
sites leave the fewest offered cards idle, and the cards fill the tightest sites first, so big blocks stay
free; a part never takes more than its site's free nodes hold: whole free nodes, or one node when none is
whole, by `gateway.placement.nodes`). When the policy states the network between centres
(`gateway.policy.network`), the fewest sites come first still, then the best-connected set (its weakest link:
highest bandwidth, then lowest latency), then the tightest; the plan says why in GANG_LINKS, and GANG_THIN_LINK
when the chosen set crosses a thin or unknown link (it still runs). Every site the policy refuses, or that is
backing off for this job, is left out with its reason. Ties go by class order, then site names: the same inputs
always give the same plan.
It does not reserve anything (the coordinator in `gateway.gangs.coordinator` does) and does no I/O; no clock needed.
All parts of a gang are of one accelerator class: a gang is one training run, and mixing card types in one
collective is not something this planner offers.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from fedgate.common.reasons import ReasonCode
from gateway.jobs.model import Placement, Reason, Topology
from gateway.placement import nodes as node_shape
from gateway.placement.place import Candidate, OptionFilter, place
from gateway.policy.network import DatasetSource, Link, Network
from gateway.sites.model import Pool, SiteView

MAX_GANG_CANDIDATES = 16
"""Sites per class weighed for a gang (the largest free blocks): bounds the search to C(16, k) sets."""


@dataclass(frozen=True)
class GangPlan:
    """Parts to reserve (empty when the job cannot start now) and the reasons for the verdict."""

    parts: tuple[Placement, ...]
    reasons: tuple[Reason, ...]
    candidates: tuple[Candidate, ...] = ()

    @property
    def spans_sites(self) -> bool:
        return len(self.parts) > 1


def plan_gang(
    classes: Sequence[str],
    cards: int,
    topology: Topology,
    sites: Sequence[SiteView],
    allows: OptionFilter | None = None,
    backing_off: Collection[str] = (),
    part_allows: OptionFilter | None = None,
    nodes: int = 0,
    network: Network | None = None,
    source: DatasetSource | None = None,
) -> GangPlan:
    """Parts for `cards` cards of one of `classes` (in preference order) over `sites`.

    `allows(site, class)` is the policy's word on each option (None: allowed); `part_allows` the same for a
    part of a gang (a centre's size limit judges the part, not the whole job; default: `allows`), and each
    centre's part is kept within that limit. `backing_off` names sites not to nominate for this job for now
    (they refused or timed out recently). `nodes` is the job's stated node count (0: the gateway chooses), which
    a one-site placement honours. Without it each part of a gang takes the nodes the gateway chooses for its
    cards, and never more than its site's free node room holds (`gateway.placement.nodes.block`). With it the
    gang is split in whole nodes of cards / nodes cards each: a part is some of those nodes (its `nodes`), each
    on a free whole node of its site, at least min_cards_per_site cards (rounded up to whole nodes).
    `network` (the policy's links) ranks sets of equal size by their weakest link; `source` (the dataset the job
    names) makes a one-site placement count the copy to each site (`gateway.placement.transfer`); a gang's
    parts do not weigh it.
    """
    usable = [s for s in sites if s.name not in backing_off]
    single = place(
        classes, cards, usable, allows, max_sites=topology.max_sites, nodes=nodes, source=source
    )  # FRAGMENTED for one site only
    if single.placement is not None:
        return GangPlan((single.placement,), single.reasons, single.candidates)
    backoff = tuple(
        Reason("site", ReasonCode.SITE_BACKOFF, f"{name} refused or timed out recently; not asked again yet", name)
        for name in sorted(backing_off)
        if any(s.name == name for s in sites)
    )
    reasons = backoff + single.reasons
    if topology.max_sites <= 1:
        return GangPlan((), reasons, single.candidates)
    unit = cards // nodes if nodes > 1 and cards % nodes == 0 else 0
    # Without a stated shape the gang is counted in cards; with one, in nodes of `unit` cards.
    amount = nodes if unit else cards
    minimum = max(1, -(-topology.min_cards_per_site // unit) if unit else topology.min_cards_per_site)
    links = network if network is not None and network.knows_links else None
    best: tuple[tuple[int, tuple[float, float], int, int, tuple[str, ...]], tuple[Placement, ...]] | None = None
    runner_up: tuple[str, ...] = ()  # the next best-connected set that fits, for GANG_LINKS
    shortfalls: list[Reason] = []
    for rank, cls in enumerate(classes):
        free = _free_blocks(cls, usable, part_allows or allows, unit)
        split = _split(cls, amount, topology.max_sites, minimum, free, links)
        plan = split[0] if split is not None else None
        if plan is None:
            total = sum(free.values())
            if total >= amount:
                shortfalls.append(_fragmentation(cls, amount, topology, minimum, free, unit))
            continue
        if unit:
            plan = tuple(replace(p, cards=p.cards * unit, nodes=p.cards if p.cards > 1 else 0) for p in plan)
        idle = sum(free[p.site] * (unit or 1) for p in plan) - cards
        names = tuple(p.site for p in plan)
        key = (len(plan), links.rank(names) if links else (0.0, 0.0), idle, rank, names)
        if best is None or key < best[0]:
            best, runner_up = (key, plan), split[1] if split is not None else ()
    if best is None:
        return GangPlan((), tuple(shortfalls) + reasons, single.candidates)
    parts = best[1]
    where = ", ".join(f"{p.cards} on {p.site}" + (f" ({p.nodes} nodes)" if p.nodes > 1 else "") for p in parts)
    placed = Reason(
        "capacity",
        ReasonCode.GANG_PLANNED,
        f"no single site fits {cards} cards; gang of {len(parts)} sites ({where} x {parts[0].accelerator_class})",
    )
    return GangPlan(parts, (placed, *_link_reasons(links, best[0][4], runner_up)), single.candidates)


def _free_blocks(cls: str, sites: Sequence[SiteView], allows: OptionFilter | None, unit: int = 0) -> dict[str, int]:
    """Free offered cards of `cls` per site the gang may use (connected, not draining, allowed); with `unit` (a
    stated shape's cards per node), the nodes free for it instead (`_free_nodes`)."""
    free: dict[str, int] = {}
    for site in sites:
        if not site.connected or site.draining:
            continue
        for pool in site.pools:
            if pool.accelerator_class != cls:
                continue
            if allows is not None and allows(site, cls) is not None:
                continue
            if unit:
                n = _free_nodes(pool, site.free_cards(pool), unit)
            else:
                n = node_shape.block(pool, site.free_cards(pool))  # a part must fit the site's free nodes
            if site.terms is not None and site.terms.max_job_cards:
                limit = site.terms.max_job_cards
                n = min(n, limit // unit if unit else limit)  # the centre takes no bigger part than this
            if n > 0:
                free[site.name] = n
    return free


def _free_nodes(pool: Pool, free: int, unit: int) -> int:
    """The nodes of a pool that can each run one task of `unit` cards for a multi-node part: its free whole
    nodes (one node with `unit` free on it when none is whole); `free // unit` on a pool without node shape."""
    if pool.cards_per_node <= 0:
        return free // unit
    if unit > pool.cards_per_node:
        return 0
    have = node_shape.room(pool, free)
    return have.whole or (1 if have.largest >= unit else 0)


def _split(
    cls: str, cards: int, max_sites: int, minimum: int, free: dict[str, int], links: Network | None = None
) -> tuple[tuple[Placement, ...], tuple[str, ...]] | None:
    """The tightest set of the fewest sites (2..max_sites) that holds `cards` with `minimum` per part; with
    `links`, the best-connected such set first (then the tightest), and the next best-connected set that fits
    (a weaker weakest link), for the reasons: () when there is none, or without `links`."""
    eligible = sorted(((n, name) for name, n in free.items() if n >= minimum), key=lambda e: (-e[0], e[1]))
    eligible = eligible[:MAX_GANG_CANDIDATES]
    for size in range(2, min(max_sites, len(eligible)) + 1):
        if size * minimum > cards:
            return None  # more sites only make each part smaller
        fitting = [c for c in itertools.combinations(eligible, size) if sum(n for n, _ in c) >= cards]
        if not fitting:
            continue
        # Each pair's link ranked once (at most C(16, 2)); a set ranks by its weakest pair.
        pair = (
            {(a, b): links.rank((a, b)) for (_, a), (_, b) in itertools.combinations(sorted(eligible, key=_name), 2)}
            if links is not None
            else {}
        )
        if len(set(pair.values())) <= 1:  # no links, or all alike (none stated among these sites): no set is better
            # Tightest: fewest cards left idle at the chosen sites; then names, for determinism.
            chosen = min(fitting, key=lambda c: (sum(n for n, _ in c), sorted(name for _, name in c)))
            return _assign(cls, cards, minimum, chosen), ()
        ranked = []
        for c in fitting:
            names = tuple(sorted(name for _, name in c))
            weakest = max(pair[x, y] for x, y in itertools.combinations(names, 2))
            ranked.append((weakest, sum(n for n, _ in c), names, c))
        ranked.sort()
        chosen, weaker = ranked[0][3], next((e[2] for e in ranked if e[0] != ranked[0][0]), ())
        return _assign(cls, cards, minimum, chosen), weaker
    return None


def _name(entry: tuple[int, str]) -> str:
    return entry[1]


def _assign(cls: str, cards: int, minimum: int, chosen: tuple[tuple[int, str], ...]) -> tuple[Placement, ...]:
    """Each part its minimum, then the rest filling the tightest sites first (the largest block stays free)."""
    sizes = {name: minimum for _, name in chosen}
    left = cards - minimum * len(chosen)
    for n, name in sorted(chosen):
        more = min(left, n - minimum)
        sizes[name] += more
        left -= more
    assert left == 0, "the chosen sites hold the job"
    return tuple(Placement(name, cls, sizes[name]) for name in sorted(sizes))


def _fragmentation(
    cls: str, amount: int, topology: Topology, minimum: int, free: dict[str, int], unit: int = 0
) -> Reason:
    blocks = ", ".join(f"{name} {n}" for name, n in sorted(free.items(), key=lambda e: (-e[1], e[0])))
    what = f"{cls} nodes for {unit} cards each" if unit else f"{cls} cards"
    return Reason(
        "capacity",
        ReasonCode.FRAGMENTATION,
        f"{sum(free.values())} {what} are free in total ({blocks}) but not {amount} in at most "
        f"{topology.max_sites} sites with at least {minimum} each",
    )


def _link_reasons(network: Network | None, chosen: tuple[str, ...], runner_up: tuple[str, ...]) -> tuple[Reason, ...]:
    """GANG_LINKS (why these sites: their weakest link, and the next best set's when one was weaker), and
    GANG_THIN_LINK when the chosen set crosses a thin or unknown link; nothing when the policy states no links."""
    weakest = network.weakest(chosen) if network is not None else None
    if network is None or weakest is None:
        return ()
    (a, b), link = weakest
    sites = " and ".join(chosen) if len(chosen) == 2 else ", ".join(chosen[:-1]) + f" and {chosen[-1]}"
    what = "linked at" if len(chosen) == 2 else f"weakest link {a}-{b} at"
    message = f"parts on {sites}: {what} {link.text()} (the best-connected set of {len(chosen)} that fits"
    other = network.weakest(runner_up) if runner_up else None
    if other is not None:
        message += f"; the next best crosses {other[0][0]}-{other[0][1]} at {other[1].text()}"
    reasons = [Reason("capacity", ReasonCode.GANG_LINKS, message + ")")]
    thin = [(x, y, network.link(x, y)) for i, x in enumerate(chosen) for y in chosen[i + 1 :]]
    for x, y, found in thin:
        if found is not None and found.thin:
            reasons.append(Reason("capacity", ReasonCode.GANG_THIN_LINK, _thin_text(x, y, found)))
    return tuple(reasons)


def _thin_text(a: str, b: str, link: Link) -> str:
    if not link.stated:
        return f"the gang crosses {a}-{b}, a link the policy does not state: {link.text()}; it runs anyway"
    return f"the gang crosses a thin link, {a}-{b} at {link.text()}: its collectives will be slow; it runs anyway"
