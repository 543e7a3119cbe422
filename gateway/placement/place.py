"""Placement: on which site, and which pool, should an admitted job run now?

Owns: the pure filter-and-score over a snapshot of sites for one job, returning a decision with a reason for
every site it turned down, and, when the job fits nowhere although the sites that would take it hold enough
free cards of a class between them, the FRAGMENTED reason that says so. A pool whose free cards are not the
nodes the job needs refuses it with NODE_SHAPE (`gateway.placement.nodes`). It does not change any state: the
scheduler applies the decision, and it does no I/O. Gangs across sites and reservations build on this in
their own modules (a job that may span sites gets no FRAGMENTED from here: gangs judge that). A job that
names a dataset is placed near it among the sites where it fits (`gateway.placement.transfer`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fedgate.common.reasons import ReasonCode
from gateway.jobs.model import Placement, Reason
from gateway.placement import nodes as node_shape
from gateway.placement.freeindex import FreeIndex
from gateway.placement.transfer import nearest, transfer_reason
from gateway.policy.network import DatasetSource
from gateway.sites.model import Pool, SiteView

CANDIDATE_WINDOW = 8  # sites per class that the scheduling cycle weighs at once, tightest fits first


@dataclass(frozen=True)
class Candidate:
    """How one site judges the job: feasible with a score, or not with the reasons why."""

    site: str
    feasible: bool
    score: float = 0.0
    accelerator_class: str = ""
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True)
class Explanation:
    """Why a job is where it is (or would go where): admission's verdict, then each site's answer."""

    admitted: bool
    reasons: tuple[Reason, ...]
    candidates: tuple[Candidate, ...]
    policy_version: str


@dataclass(frozen=True)
class PlacementDecision:
    placement: Placement | None
    candidates: tuple[Candidate, ...]
    reasons: tuple[Reason, ...]


def _judge_pool(site: SiteView, pool: Pool, cards: int, nodes: int = 0) -> tuple[float | None, Reason]:
    free = site.free_cards(pool)
    cls = pool.accelerator_class
    if pool.offered < cards:
        return None, Reason(
            "offers",
            ReasonCode.OFFER_TOO_SMALL,
            f"{site.name} offers {pool.offered} {cls} cards to the federation; the job needs {cards}",
            site.name,
        )
    if free < cards:
        return None, Reason(
            "capacity",
            ReasonCode.NO_FREE_CAPACITY,
            f"{site.name} has {free} of {pool.offered} offered {cls} cards free; the job needs {cards}",
            site.name,
        )
    if refused := node_shape.refusal(site.name, pool, free, cards, nodes):
        return None, Reason("capacity", ReasonCode.NODE_SHAPE, refused, site.name)
    # Best fit: the fewer offered cards left idle after this job, the better; keeps big blocks free.
    score = 1.0 - (free - cards) / max(pool.offered, 1)
    return score, Reason("capacity", ReasonCode.FITS, f"{site.name} has {free} {cls} cards free", site.name)


OptionFilter = Callable[[SiteView, str], Reason | None]


def judge_site(
    site: SiteView, classes: Sequence[str], cards: int, allows: OptionFilter | None = None, nodes: int = 0
) -> Candidate:
    if not site.connected:
        return Candidate(
            site.name, False, reasons=(Reason("offers", ReasonCode.SITE_OFFLINE, "agent not connected", site.name),)
        )
    if site.draining:
        return Candidate(
            site.name, False, reasons=(Reason("offers", ReasonCode.SITE_DRAINING, "site is draining", site.name),)
        )
    pools = [p for p in site.pools if p.accelerator_class in classes]
    if not pools:
        offered = ", ".join(sorted({p.accelerator_class for p in site.pools})) or "nothing"
        reason = Reason("offers", ReasonCode.NO_MATCHING_POOL, f"{site.name} offers {offered}", site.name)
        return Candidate(site.name, False, reasons=(reason,))
    best: Candidate | None = None
    refusals: list[Reason] = []
    for pool in pools:
        verdict = allows(site, pool.accelerator_class) if allows is not None else None
        if verdict is not None:  # the policy refuses this site or class for this job (residency, rules, quota)
            refusals.append(verdict)
            continue
        score, reason = _judge_pool(site, pool, cards, nodes)
        if score is None:
            refusals.append(reason)
        elif best is None or score > best.score:
            best = Candidate(site.name, True, score, pool.accelerator_class, (reason,))
    return best or Candidate(site.name, False, reasons=tuple(refusals))


def place(
    classes: Sequence[str],
    cards: int,
    sites: Sequence[SiteView],
    allows: OptionFilter | None = None,
    *,
    max_sites: int = 1,
    nodes: int = 0,
    source: DatasetSource | None = None,
) -> PlacementDecision:
    """Choose the best feasible (site, pool) for `cards` cards of any of `classes`.

    Ties on score go to the class listed first in `classes`, then to the site name, so that the same inputs
    always give the same decision. `allows(site, class)` is the policy's word on each option (a pure function
    the caller builds from the policy and live usage); None means allowed. `max_sites` is the job's topology
    limit: a job held to one site that fits nowhere is told when its cards are there, only split (FRAGMENTED).
    `nodes` is the job's stated node count (0: the gateway chooses); a pool whose free cards are not the nodes
    the job needs (`gateway.placement.nodes`) refuses it with NODE_SHAPE. `source` (the dataset the job names,
    if any) keeps the choice to the sites near it (`gateway.placement.transfer.nearest`), with DATASET_TRANSFER.
    """
    candidates = tuple(judge_site(site, classes, cards, allows, nodes) for site in sites)
    feasible = [c for c in candidates if c.feasible]
    if not feasible:
        reasons = tuple(r for c in candidates for r in c.reasons) or (
            Reason("offers", ReasonCode.NO_SITES, "no site has joined the federation yet"),
        )
        split = fragmentation(classes, cards, sites, allows) if max_sites <= 1 else None
        return PlacementDecision(None, candidates, reasons + ((split,) if split else ()))
    rank = {cls: i for i, cls in enumerate(classes)}

    def key(c: Candidate) -> tuple[float, int, str]:
        return (-c.score, rank.get(c.accelerator_class, 0), c.site)

    if source is not None:
        chosen = nearest(feasible, lambda c: c.site, key, source)
        placement = Placement(chosen.site, chosen.accelerator_class, cards)
        moved = transfer_reason(source, chosen.site, [c.site for c in feasible])
        return PlacementDecision(placement, candidates, (placed_reason(placement), moved))
    chosen = min(feasible, key=key)
    placement = Placement(chosen.site, chosen.accelerator_class, cards)
    return PlacementDecision(placement, candidates, (placed_reason(placement),))


def place_in_windows(
    classes: Sequence[str],
    cards: int,
    index: FreeIndex,
    view_of: Callable[[str], SiteView],
    allows: OptionFilter | None = None,
    window: int = CANDIDATE_WINDOW,
    nodes: int = 0,
) -> PlacementDecision | None:
    """The scheduling cycle's placement: `place` over the `window` tightest-fitting sites per class from the
    index of free cards, the next window only when every site of the last one was refused; None when no
    site fits. `gateway.scheduler.cyclecache` makes the same decision faster (a test holds the two together); the
    simulator calls this one."""
    offset = 0
    while names := index.candidates(classes, cards, window, offset):
        decision = place(classes, cards, [view_of(name) for name in names], allows, nodes=nodes)
        if decision.placement is not None:
            return decision
        offset += window
    return None


def placed_reason(placement: Placement) -> Reason:
    """The reason a job carries for the best-fit placement `place` chose."""
    site, cls, cards = placement.site, placement.accelerator_class, placement.cards
    return Reason(
        "capacity",
        ReasonCode.PLACED,
        f"placed on {site} ({cards} x {cls}: best fit, fewest offered cards left idle)",
        site,
    )


def fragmentation(
    classes: Sequence[str], cards: int, sites: Sequence[SiteView], allows: OptionFilter | None = None
) -> Reason | None:
    """FRAGMENTED (stage capacity) when, for a class the job may use, the free cards of the sites that would
    otherwise take it (connected, not draining, the policy and the centre's terms allowing) add up to the
    job's `cards` but no one of them has that many; None otherwise. The first such class in `classes` is
    named, with the total, how many sites hold it and the largest block."""
    for cls in classes:
        free: dict[str, int] = {}
        for site in sites:
            if not site.connected or site.draining:
                continue
            for pool in site.pools:
                if pool.accelerator_class == cls and (allows is None or allows(site, cls) is None):
                    free[site.name] = site.free_cards(pool)
        total, largest = sum(free.values()), max(free.values(), default=0)
        if largest < cards <= total:
            holding = sum(1 for n in free.values() if n)
            return Reason(
                "capacity",
                ReasonCode.FRAGMENTED,
                f"{total} {cls} cards are free across {holding} sites, at most {largest} at one; the job needs"
                f" {cards} at one site and may not span sites (topology.max_sites 1)",
            )
    return None
