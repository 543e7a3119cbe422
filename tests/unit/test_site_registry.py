"""The gateway's commands to a site: numbered from durable blocks, and Cancels and Preempts the site did not
acknowledge sent again on its next stream (site.proto, rules 10 and 11)."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.sites.registry import (
    SEQUENCE_BLOCK,
    CancelCommand,
    Command,
    DrainCommand,
    Outbox,
    PreemptCommand,
    SiteRegistry,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def drained(outbox: Outbox) -> list[tuple[int, Command]]:
    items: list[tuple[int, Command]] = []
    while not outbox.empty():
        item = outbox.get_nowait()
        assert isinstance(item, tuple), item  # no stream end (None, StreamClosed) in these tests
        items.append(item)
    return items


def test_unacknowledged_cancels_and_preempts_are_sent_again_under_new_numbers() -> None:
    registry = SiteRegistry()
    _, first = registry.connect("a", "v1", NOW)
    registry.send("a", CancelCommand("j1", 1, "user"))
    registry.send("a", PreemptCommand("j2", 1, 30))
    registry.send("a", CancelCommand("j3", 1, "user"))
    sent = drained(first)
    assert [s for s, _ in sent] == [1, 2, 3]
    registry.acknowledge("a", 1)  # the agent's Ack: j1's cancel is done
    _, second = registry.connect("a", "v1", NOW, resume_cursor=2)  # it also handled j2's preempt
    assert drained(second) == [(4, CancelCommand("j3", 1, "user"))]
    _, third = registry.connect("a", "v1", NOW, resume_cursor=0)  # j3's cancel was never acked: again
    assert drained(third) == [(5, CancelCommand("j3", 1, "user"))]
    registry.acknowledge("a", 5)
    _, fourth = registry.connect("a", "v1", NOW)
    assert drained(fourth) == []


def test_sequences_come_from_reserved_blocks_and_only_increase() -> None:
    reserved: list[tuple[str, int]] = []
    marks = {"a": 5000}  # what an earlier gateway reserved

    def reserve(site: str, count: int) -> int:
        reserved.append((site, count))
        first = marks[site] + 1
        marks[site] += count
        return first

    registry = SiteRegistry(reserve)
    _, outbox = registry.connect("a", "v1", NOW)
    for _ in range(SEQUENCE_BLOCK + 1):
        registry.send("a", DrainCommand(False))
    sequences = [s for s, _ in drained(outbox)]
    assert sequences == list(range(5001, 5001 + SEQUENCE_BLOCK + 1))
    assert reserved == [("a", SEQUENCE_BLOCK), ("a", SEQUENCE_BLOCK)]
