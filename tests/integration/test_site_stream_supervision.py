"""The tasks of one site stream fail together: a bug in one ends that stream only (INTERNAL, logged with its
traceback), other sites' streams and the gateway go on, and the agent re-dials and is served again."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import GatewayHandle, start_test_agent, wait_for_capacity

POOLS: list[dict[str, object]] = [{"class": "nvidia-h100", "cards": 8, "offered": 8, "cards_per_node": 8}]


def test_a_failing_stream_task_ends_that_stream_only_and_the_agent_reconnects(
    gateway: GatewayHandle, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO)
    steady = start_test_agent(gateway, "centre-y", POOLS, tmp_path / "y")
    wait_for_capacity(gateway, "centre-y")
    registry = gateway.running.core.registry
    real_report = registry.report
    failed: list[str] = []

    def report(site: str, *args: Any, **kwargs: Any) -> Any:
        if site == "centre-x" and not failed:  # the first report of centre-x meets a bug in the gateway
            failed.append(site)
            raise RuntimeError("a bug while applying a capacity report")
        return real_report(site, *args, **kwargs)

    monkeypatch.setattr(registry, "report", report)
    flaky = start_test_agent(gateway, "centre-x", POOLS, tmp_path / "x")
    try:
        wait_for_capacity(gateway, "centre-x")  # reported on the second stream
        assert failed == ["centre-x"]
        assert "site centre-x: a stream task failed; ending this stream" in caplog.text
        assert "RuntimeError: a bug while applying a capacity report" in caplog.text  # with its traceback
        assert "INTERNAL: internal error on the site stream" in caplog.text  # what the agent was told
        assert caplog.text.count("site centre-x connected") >= 2, "the agent re-dialled"
        assert caplog.text.count("site centre-y connected") == 1, "the other site's stream was not touched"
    finally:
        flaky.stop()
        steady.stop()
