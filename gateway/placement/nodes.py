"""Node shape: whether a job's cards fit a pool as the nodes the job needs, not only as a count of cards.

Owns: the node room of a pool (free whole nodes and the most free cards on one node, as the agent reported
them, capped by the free cards the gateway may still place), the nodes a job needs (`need`), and the verdict
`refusal` that placement, the cycle's cache and the gang planner all ask. The rule: a job of at most
cards_per_node cards needs one node with that many free (a free whole node or the largest partly free one);
a larger job needs ceil(cards / cards_per_node) whole free nodes, or exactly `nodes` whole nodes when the job
states its shape (each with cards / nodes cards, at most cards_per_node). A pool that says no cards_per_node
has no node shape: cards alone decide, as before node shapes. Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.sites.model import Pool


@dataclass(frozen=True)
class NodeRoom:
    """What of a pool can be placed, by node: `whole` nodes with every card free, and `largest` free cards on
    any one node (cards_per_node when a whole node is free)."""

    whole: int
    largest: int


@dataclass(frozen=True)
class NodeNeed:
    """What a job needs of a pool's nodes: `nodes` nodes with `per_node` cards each; `whole` when they must
    be whole free nodes (a job of more than one node's cards)."""

    nodes: int
    per_node: int
    whole: bool

    def describe(self) -> str:
        if not self.whole:
            return f"{self.per_node} cards on one node"
        return f"{self.nodes} whole free nodes ({self.per_node} cards each)"


def room(pool: Pool, free: int) -> NodeRoom:
    """The pool's node room when the gateway may still place `free` of its cards. An agent that did not report
    nodes (None): its free cards lie as whole nodes, then the rest on one node (the assumption before node
    shapes). One that did: when `free` is below what the reported nodes hold (the gateway placed cards there
    since the report, or a hold keeps some), the missing cards came off those nodes, and the gateway does not
    know which: it assumes each spoilt a whole node and they left the least on any one node (`_level`). A
    function of the report and `free` alone, so every caller that sees the same free sees the same room; the
    next report says how it really is."""
    per_node = pool.cards_per_node
    if per_node <= 0:
        return NodeRoom(0, free)
    if pool.free_nodes is None:
        whole, partial = free // per_node, free % per_node
        return NodeRoom(whole, per_node if whole else partial)
    taken = max(0, pool.free_nodes * per_node + pool.largest_partial_free - free)
    whole = max(0, min(pool.free_nodes - taken, free // per_node))
    if whole:
        return NodeRoom(whole, per_node)
    return NodeRoom(0, min(_level(pool.free_nodes, per_node, pool.largest_partial_free, taken), free))


def _level(whole: int, per_node: int, partial: int, taken: int) -> int:
    """The most free cards left on one node after `taken` cards went from `whole` free nodes of `per_node` and
    one node of `partial` free, taken so as to leave the least on any one node (the smallest L such that the
    cards above L on those nodes are at most `taken`)."""
    low, high = 0, per_node if whole else partial
    while low < high:
        level = (low + high) // 2
        if whole * max(0, per_node - level) + max(0, partial - level) <= taken:
            high = level
        else:
            low = level + 1
    return low


def need(cards: int, nodes: int, per_node: int) -> NodeNeed | None:
    """The nodes a job of `cards` (stating `nodes`, 0: the gateway chooses) needs of a pool of `per_node`
    cards per node; None when it cannot run there at all (more cards per node than a node has)."""
    if per_node <= 0:
        return NodeNeed(max(nodes, 1), cards // max(nodes, 1), False)
    if nodes <= 1:
        if cards <= per_node:
            return NodeNeed(1, cards, False)
        if nodes == 1:
            return None  # one node asked for, more cards than a node has
        count = -(-cards // per_node)
        return NodeNeed(count, per_node, True)
    each = cards // nodes
    if each > per_node:
        return None
    return NodeNeed(nodes, each, True)


def placed_nodes(cards: int, stated: int, per_node: int) -> int:
    """The nodes a placement of `cards` takes on a pool of `per_node` cards per node (`stated`: the job's own
    node count, 0 for the gateway to choose), as its Launch states them: 0 for one node, and `stated` on a pool
    that says no node shape (its agent splits the cards evenly)."""
    if per_node <= 0:
        return stated if stated > 1 else 0
    wanted = need(cards, stated, per_node)
    return wanted.nodes if wanted is not None and wanted.nodes > 1 else 0


def fits(pool: Pool, free: int, cards: int, nodes: int = 0) -> bool:
    """Whether `cards` (as `nodes` nodes, 0: chosen) fit the pool's node room when `free` cards may be placed."""
    if free < cards:
        return False
    if pool.cards_per_node <= 0:
        return True
    wanted = need(cards, nodes, pool.cards_per_node)
    if wanted is None:
        return False
    have = room(pool, free)
    return have.whole >= wanted.nodes if wanted.whole else have.largest >= wanted.per_node


def refusal(site: str, pool: Pool, free: int, cards: int, nodes: int = 0) -> str:
    """Why `cards` free cards at `site` are not the nodes the job needs ('' when they are, or when the
    cards themselves are short: that is another reason's business)."""
    if free < cards or fits(pool, free, cards, nodes):
        return ""
    cls, per_node = pool.accelerator_class, pool.cards_per_node
    wanted = need(cards, nodes, per_node)
    if wanted is None:
        return (
            f"{site}'s {cls} nodes have {per_node} cards each; the job asks for {cards} cards on {nodes or 1} "
            f"node(s), more than one node holds"
        )
    have = room(pool, free)
    return (
        f"{site} has {free} {cls} cards free but {have.whole} whole free nodes of {per_node} and at most "
        f"{have.largest} free on one node; the job needs {wanted.describe()}"
    )


def block(pool: Pool, free: int) -> int:
    """The most cards of one gang part the pool can take whole: every whole free node's cards, or, with no
    whole node free, the most free on one node. A part of fewer cards fits too (parts fill the default shape)."""
    if pool.cards_per_node <= 0:
        return free
    have = room(pool, free)
    return have.whole * pool.cards_per_node if have.whole else have.largest
