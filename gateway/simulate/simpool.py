"""A simulated centre's cards, node by node, allocated as the agent's device pool allocates them.

Owns: `SimPool`: free cards per node (the last node may be smaller), the allocation rule of the agent's
`agents.core.devices.DevicePool` (one node, best fit; else whole free nodes; else any free cards; a stated
multi-node part on whole free nodes only, as `gateway.placement.nodes.need` says it needs them) and the pool
as the agent reports it (offered by the centre's windows, free = offered - used, the node room capped by the
offer: `fedgate.common.offers.capped_room`). No clock, no messages: `gateway.simulate.simsites` drives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedgate.common.offers import capped_room
from gateway.placement.nodes import need
from gateway.simulate.sites import PoolSpec
from gateway.sites.model import Pool


@dataclass
class SimPool:
    """A pool's cards, node by node: `free[i]` cards free on node i (the last node may be smaller)."""

    spec: PoolSpec
    free: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.free:
            per, cards = self.spec.cards_per_node, self.spec.cards
            self.free = [per] * (cards // per) + ([cards % per] if cards % per else [])

    @property
    def free_cards(self) -> int:
        return sum(self.free)

    def allocate(self, cards: int, nodes: int) -> list[tuple[int, int]] | None:
        """Take `cards` as an agent's device pool does; None when it cannot. Returns (node, cards) taken.
        `nodes` > 1 (a multi-node part): exactly that many whole free nodes. Otherwise one node when one fits
        (the fullest that does: best fit), else whole free nodes, else any free cards (as the agent falls back)."""
        per = self.spec.cards_per_node
        if cards > self.free_cards:
            return None
        if nodes > 1:
            wanted = need(cards, nodes, per)
            return self._whole(cards, wanted.nodes, wanted.per_node) if wanted is not None else None
        fitting = [i for i, f in enumerate(self.free) if f >= cards]
        if fitting:
            best = min(fitting, key=lambda i: (self.free[i], i))
            self.free[best] -= cards
            return [(best, cards)]
        count = -(-cards // per)
        return self._whole(cards, count, per) or self._any(cards)

    def _whole(self, cards: int, count: int, each: int) -> list[tuple[int, int]] | None:
        whole = [i for i, f in enumerate(self.free) if f == self.spec.cards_per_node][:count]
        if len(whole) < count:
            return None
        taken = list(zip(whole, [each] * (count - 1) + [cards - each * (count - 1)], strict=True))
        for node, share in taken:
            self.free[node] -= share
        return taken

    def _any(self, cards: int) -> list[tuple[int, int]]:
        taken, left = [], cards
        for node, free in enumerate(self.free):
            share = min(free, left)
            if share:
                self.free[node] -= share
                taken.append((node, share))
                left -= share
        return taken

    def release(self, taken: list[tuple[int, int]]) -> None:
        for node, cards in taken:
            self.free[node] += cards

    def report(self, offered: int) -> Pool:
        """The pool as an agent reports it when `offered` of its cards are offered now: free = offered - used,
        the node room capped by it (`fedgate.common.offers.capped_room`)."""
        per = self.spec.cards_per_node
        used = self.spec.cards - self.free_cards
        free = max(0, offered - used)
        whole = sum(1 for f in self.free if f == per)
        partial = max((f for f in self.free if f < per), default=0)
        whole, partial = capped_room(whole, partial, free, per)
        return Pool(
            self.spec.accelerator_class,
            self.spec.cards,
            offered,
            free,
            per,
            free_nodes=whole,
            largest_partial_free=partial,
        )
