"""Metrics: on loopback only, and they show what an operator alerts on (a refused policy reload, say)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from gateway.app.config import load_gateway_config
from gateway.errors import ConfigError
from tests.integration.harness import GatewayHandle
from tests.waiting import wait_cycles


def scrape(gateway: GatewayHandle) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.running.metrics_port}/metrics", timeout=5) as reply:
        return str(reply.read().decode())


def test_metrics_show_policy_version_jobs_and_sites(gateway: GatewayHandle) -> None:
    text = scrape(gateway)
    version = gateway.running.core.policy.policy.version
    assert f'fedgate_policy_info{{version="{version}"}} 1' in text
    assert "fedgate_policy_reload_failures_total 0" in text
    assert "fedgate_sites_connected 0" in text


def test_a_failed_scheduling_cycle_shows_in_the_metrics(
    gateway: GatewayHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop goes on after a failed cycle: the operator sees the failures counted, and completed ones after."""
    scheduler = gateway.running.core.scheduler
    real = scheduler.schedule
    calls = iter([True])

    def fails_once() -> int:
        if next(calls, False):
            raise RuntimeError("a bug in one cycle")
        return real()

    monkeypatch.setattr(scheduler, "schedule", fails_once)
    wait_cycles(gateway, 3)
    text = scrape(gateway)
    assert 'fedgate_scheduling_cycles_total{outcome="failed"} 1' in text
    completed = next(line for line in text.splitlines() if 'outcome="completed"' in line)
    assert int(completed.rsplit(" ", 1)[1]) >= 2


def test_a_refused_reload_shows_in_the_metrics(gateway: GatewayHandle, tmp_path: Path) -> None:
    holder = gateway.running.core.policy
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: fedgate.io/v1\nkind: Federation\nmetadata: {name: itest}\ntenants: [{nmae: x}]\n")
    holder.path = broken
    gateway.running.reload_policy("test")
    text = scrape(gateway)
    assert "fedgate_policy_reload_failures_total 1" in text
    assert "fedgate_policy_reload_error 1" in text


def test_metrics_may_not_listen_beyond_loopback(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    for name in ("ca", "cert", "key"):
        (tmp_path / f"{name}.pem").write_text("x")
    (tmp_path / "authority").mkdir()
    config.write_text(
        "apiVersion: fedgate.io/v1\nkind: Gateway\nfederation: itest\nlisten: 127.0.0.1:0\n"
        "tls: {ca: ca.pem, cert: cert.pem, key: key.pem}\nauthority: authority\nmetrics_listen: 0.0.0.0:9464\n"
    )
    with pytest.raises(ConfigError, match="not a loopback address"):
        load_gateway_config(config)
