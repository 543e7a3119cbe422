"""Which device indices of a pool are free, and handing them out without ever over-committing.

Owns: allocation and release of the federated share of one pool. Federated jobs get indices
0..offered-1; the rest (offered..cards-1) stay with the centre. A job that fits on one node gets its
cards from one node, the fullest one that still fits (best fit), to keep whole nodes free for big jobs; a
larger job gets whole free nodes when there are enough. Which nodes are free is reported (`node_room`).
It does not know about jobs, epochs or backends.
"""

from __future__ import annotations

from agents.core.model import PoolSpec
from agents.errors import InsufficientCapacity


class DevicePool:
    """The federated share of one accelerator pool."""

    def __init__(self, spec: PoolSpec) -> None:
        self.spec = spec
        self._free: set[int] = set(range(spec.offered))

    @property
    def free_count(self) -> int:
        return len(self._free)

    @property
    def used_count(self) -> int:
        return self.spec.offered - len(self._free)

    def allocate(self, cards: int, nodes: int = 0) -> tuple[int, ...]:
        """Take `cards` free device indices, or raise InsufficientCapacity and take none. `nodes` > 1 (the
        gateway's placement of a multi-node part): exactly that many whole free nodes, cards / nodes on each."""
        if cards < 0:
            raise ValueError(f"cannot allocate {cards} cards")
        if cards > len(self._free):
            raise InsufficientCapacity(
                f"the launch needs {cards} cards of {self.spec.accelerator_class} but only "
                f"{len(self._free)} of the {self.spec.offered} offered are free"
            )
        if nodes > 1 and self.spec.cards_per_node > 0:
            chosen = self._stated_nodes(cards, nodes)
        else:
            chosen = self._one_node(cards) or self._whole_nodes(cards) or sorted(self._free)[:cards]
        self._free.difference_update(chosen)
        return tuple(chosen)

    def by_node(self, devices: tuple[int, ...], nodes: int = 0) -> tuple[tuple[int, ...], ...]:
        """`devices` split by the node they are on, in node order (devices 0..cards_per_node-1 are node 0); a
        pool with no node shape splits them into `nodes` equal runs (one when `nodes` is 0 or 1)."""
        per_node = self.spec.cards_per_node
        if per_node <= 0:
            count = max(nodes, 1)
            size = -(-len(devices) // count) if devices else 0
            return tuple(devices[i * size : (i + 1) * size] for i in range(count)) if size else (devices,)
        grouped: dict[int, list[int]] = {}
        for index in devices:
            grouped.setdefault(index // per_node, []).append(index)
        return tuple(tuple(grouped[node]) for node in sorted(grouped))

    def claim(self, indices: tuple[int, ...]) -> tuple[int, ...]:
        """Take exactly these indices (an attempt re-attached after a restart holds them); returns those that
        were free and offered, which are all of them unless the config shrank the offer meanwhile."""
        taken = tuple(i for i in indices if i in self._free)
        self._free.difference_update(taken)
        return taken

    def release(self, indices: tuple[int, ...]) -> None:
        """Give indices back. Releasing an index twice or one never handed out is a bug, so it raises."""
        bad = [i for i in indices if i in self._free or not 0 <= i < self.spec.offered]
        if bad:
            raise ValueError(f"device indices {bad} of {self.spec.accelerator_class} were not allocated")
        self._free.update(indices)

    def node_room(self) -> tuple[int, int]:
        """(whole free nodes, the most free cards on one partly used node), nodes by index: devices
        0..cards_per_node-1 are node 0, and so on. A node the offer cuts short is never whole. (0, 0) when the
        pool has no node shape (cards_per_node 0)."""
        per_node = self.spec.cards_per_node
        if per_node <= 0:
            return 0, 0
        by_node: dict[int, int] = {}
        for index in self._free:
            by_node[index // per_node] = by_node.get(index // per_node, 0) + 1
        whole = sum(1 for n in by_node.values() if n == per_node)
        partial = max((n for n in by_node.values() if n < per_node), default=0)
        return whole, partial

    def _whole_nodes(self, cards: int) -> list[int] | None:
        """A job of more than one node's cards: whole free nodes, lowest first (what the gateway placed it on)."""
        per_node = self.spec.cards_per_node
        if per_node <= 0 or cards <= per_node:
            return None
        whole = self._whole_free_nodes()
        needed = -(-cards // per_node)
        if len(whole) < needed:
            return None
        chosen = [n * per_node + k for n in whole[:needed] for k in range(per_node)]
        return chosen[:cards]

    def _stated_nodes(self, cards: int, nodes: int) -> list[int]:
        """`nodes` whole free nodes, lowest first, the cards spread evenly over them (the first `cards % nodes`
        take one more): the shape the gateway placed. InsufficientCapacity names what is free as nodes."""
        per_node = self.spec.cards_per_node
        each, extra = divmod(cards, nodes)
        if each == 0 or each + (1 if extra else 0) > per_node:
            raise InsufficientCapacity(
                f"{cards} cards cannot be spread over {nodes} nodes of {per_node} {self.spec.accelerator_class} "
                "cards each"
            )
        whole = self._whole_free_nodes()
        if len(whole) < nodes:
            raise InsufficientCapacity(
                f"the launch needs {nodes} whole free nodes of {self.spec.accelerator_class} but {len(whole)} are "
                "free whole"
            )
        return [n * per_node + k for i, n in enumerate(whole[:nodes]) for k in range(each + (1 if i < extra else 0))]

    def _whole_free_nodes(self) -> list[int]:
        per_node = self.spec.cards_per_node
        nodes = sorted({i // per_node for i in self._free})
        return [n for n in nodes if all(n * per_node + k in self._free for k in range(per_node))]

    def _one_node(self, cards: int) -> list[int] | None:
        per_node = self.spec.cards_per_node
        if cards == 0 or cards > per_node:
            return None
        by_node: dict[int, list[int]] = {}
        for index in sorted(self._free):
            by_node.setdefault(index // per_node, []).append(index)
        fitting = [free for free in by_node.values() if len(free) >= cards]
        if not fitting:
            return None
        best = min(fitting, key=len)  # fullest node that fits; ties go to the lowest node (dict order)
        return best[:cards]
