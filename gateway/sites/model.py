"""What the gateway knows of a site at one instant, as plain dataclasses: pools, the centre's terms, the view.

Owns: the shape of a site's capacity and terms as placement reads them, and the bounds of a sane capacity
report (`check_capacity`: site.proto's CapacityReport states them). No I/O, no gRPC.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from fedgate.common.terms import SiteTerms as CentreTerms
from gateway.errors import InvalidArgument
from gateway.jobs.model import JobSpec

MAX_POOLS = 64
"""Pools in one capacity report (one per accelerator class: the catalogue has far fewer classes)."""
MAX_POOL_CARDS = 1_000_000
"""Cards in one pool (total; offered and free are at most total). The largest centres hold tens of thousands; a
count above this is a broken or lying agent (10^12 sent as uint32 arrives as about 3.5e9, and is refused)."""
MAX_CARDS_PER_NODE = 1024
"""Cards per node a pool may report (0: not said)."""


@dataclass(frozen=True)
class Pool:
    """A pool of identical accelerators a site offers. Counts are cards."""

    accelerator_class: str
    total: int
    offered: int
    free: int
    cards_per_node: int = 0
    interconnect: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    free_nodes: int | None = None
    """Nodes with all cards_per_node cards free; None when the agent did not say (an older agent): then the
    free cards count as whole nodes, free // cards_per_node of them, and the rest on one partly used node."""
    largest_partial_free: int = 0
    """The most free cards on one partly used node (read only when free_nodes is said)."""


def check_capacity(pools: list[Pool] | tuple[Pool, ...]) -> None:
    """Refuse a capacity report outside the contract's bounds (InvalidArgument, reason CAPACITY_OUT_OF_BOUNDS or
    INCONSISTENT_CAPACITY), naming the pool and the limit. The report is refused whole: nothing of it is believed."""
    if len(pools) > MAX_POOLS:
        raise InvalidArgument(
            f"a capacity report lists {len(pools)} pools; at most {MAX_POOLS} are allowed (limit max_pools)",
            reason="CAPACITY_OUT_OF_BOUNDS",
            metadata={"limit": "max_pools", "max": str(MAX_POOLS)},
        )
    seen: set[str] = set()
    for pool in pools:
        name = pool.accelerator_class[:64]
        if pool.accelerator_class in seen:
            raise InvalidArgument(f"pool {name!r} is listed twice in one report", reason="CAPACITY_OUT_OF_BOUNDS")
        seen.add(pool.accelerator_class)
        for what, value, most in (
            ("total", pool.total, MAX_POOL_CARDS),
            ("offered", pool.offered, MAX_POOL_CARDS),
            ("free", pool.free, MAX_POOL_CARDS),
            ("cards_per_node", pool.cards_per_node, MAX_CARDS_PER_NODE),
        ):
            if not 0 <= value <= most:
                limit = "max_cards_per_node" if what == "cards_per_node" else "max_pool_cards"
                raise InvalidArgument(
                    f"pool {name!r} reports {what}={value}; at most {most} is allowed (limit {limit})",
                    reason="CAPACITY_OUT_OF_BOUNDS",
                    metadata={"limit": limit, "max": str(most)},
                )
        _check_nodes(pool, name)
        if not pool.free <= pool.offered <= pool.total:
            raise InvalidArgument(
                f"pool {name!r} reports total={pool.total} offered={pool.offered} free={pool.free}; a site must "
                "report free <= offered <= total",
                reason="INCONSISTENT_CAPACITY",
            )


def _check_nodes(pool: Pool, name: str) -> None:
    """free_nodes x cards_per_node <= free, largest_partial_free below cards_per_node and at most free."""
    if pool.free_nodes is None:
        return
    per_node = pool.cards_per_node
    if per_node == 0 and (pool.free_nodes or pool.largest_partial_free):
        raise InvalidArgument(
            f"pool {name!r} reports free nodes without cards_per_node; a node shape needs cards_per_node",
            reason="INCONSISTENT_CAPACITY",
        )
    if pool.free_nodes * per_node > pool.free or pool.largest_partial_free > pool.free:
        raise InvalidArgument(
            f"pool {name!r} reports free_nodes={pool.free_nodes} of {per_node} cards and largest_partial_free="
            f"{pool.largest_partial_free} but free={pool.free}; free nodes cannot hold more than the free cards",
            reason="INCONSISTENT_CAPACITY",
        )
    if per_node and pool.largest_partial_free >= per_node:
        raise InvalidArgument(
            f"pool {name!r} reports largest_partial_free={pool.largest_partial_free}; a partly used node has "
            f"fewer than its {per_node} cards free (a node with all free is a free node)",
            reason="INCONSISTENT_CAPACITY",
        )


@dataclass(frozen=True)
class SiteTerms(CentreTerms):
    """The centre's terms as its agent reports them (`fedgate.common.terms`: the rule the agent enforces),
    read by placement for a job spec. Empty accepts all."""

    def refusal(self, spec: JobSpec, image: str) -> str:
        """Why the centre would refuse this job ('' when it would take it)."""
        refused = self.judge(tenant=spec.tenant, project=spec.project, cards=spec.resources.cards, image=image)
        return refused.message if refused is not None else ""


@dataclass(frozen=True)
class SiteView:
    """What placement needs to know about a site at one instant."""

    name: str
    connected: bool
    draining: bool
    pools: tuple[Pool, ...]
    # Cards per class already leased by this gateway at the site (dispatched or running).
    leased: tuple[tuple[str, int], ...] = ()
    agent_version: str = ""
    last_seen: datetime | None = None
    terms: SiteTerms | None = None
    liveness: str = "live"
    """live, suspect (heartbeats missed) or lost (silent past its lease); `gateway.sites.liveness`."""
    liveness_reason: str = ""

    def leased_cards(self, accelerator_class: str) -> int:
        return sum(n for cls, n in self.leased if cls == accelerator_class)

    def free_cards(self, pool: Pool) -> int:
        """Free cards the gateway may still place: the site's word, bounded by what it offered minus leases."""
        return max(0, min(pool.free, pool.offered - self.leased_cards(pool.accelerator_class)))


def offered_by(views: Iterable[SiteView]) -> dict[str, int]:
    """Cards offered per class by the sites that may take work now (connected, not draining): what a share quota
    is a share of."""
    offered: dict[str, int] = defaultdict(int)
    for view in views:
        if view.connected and not view.draining:
            for pool in view.pools:
                offered[pool.accelerator_class] += pool.offered
    return offered
