"""A misconfigured agent never storms the gateway: a pool class the catalogue lacks stops it at start with the
reason, and two agents of one site are each told that the other took the stream and back off longer each time,
against a real gateway and real agents."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from agents.errors import GatewayRefused
from tests.integration.harness import GatewayHandle, start_test_agent, wait_for_capacity
from tests.waiting import eventually

POOL = {"class": "nvidia-h20", "cards": 8, "offered": 8, "cards_per_node": 8}


def test_a_pool_class_the_catalogue_lacks_stops_the_agent_at_start_with_the_reason(
    gateway: GatewayHandle, tmp_path: Path
) -> None:
    agent = start_test_agent(gateway, "centre-x", [{**POOL, "class": "nvidia-x999"}], tmp_path)
    try:
        with pytest.raises(GatewayRefused) as refused:
            agent.task.result(15)  # without the check it re-dials every 0.0-0.2 s forever
    finally:
        agent.loop.loop.call_soon_threadsafe(agent.stop_event.set)
    assert "nvidia-x999" in str(refused.value) and "catalogue" in str(refused.value)


def test_two_agents_of_one_site_are_told_the_other_took_the_stream_and_back_off_longer_each_time(
    gateway: GatewayHandle, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    first = start_test_agent(gateway, "centre-c", [POOL], tmp_path / "first")
    wait_for_capacity(gateway, "centre-c")
    second = start_test_agent(gateway, "centre-c", [POOL], tmp_path / "second")  # the same site certificate
    try:

        def waits() -> list[float]:
            told = [r.getMessage() for r in caplog.records if "took over its stream; only one agent" in r.getMessage()]
            return [float(m) for t in told for m in re.findall(r"trying again in (\d+\.\d)s", t)]

        # The first agent is displaced, comes back after its wait and displaces the second, which is told too.
        eventually(lambda: len(waits()) >= 3, timeout=20, what="three takeovers, each told to the displaced agent")
    finally:
        first.stop()
        second.stop()
    delays = waits()
    # Each wait is at least half its ceiling, which doubles per refusal: the first agent's second wait is >= 1 s.
    assert delays[0] >= 0.5 and delays[2] >= 1.0, delays
    connects = [r for r in caplog.records if re.match(r"site centre-c connected", r.getMessage())]
    assert len(connects) < 8, f"{len(connects)} connections: the agents still fight over the stream"
