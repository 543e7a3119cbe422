"""The agent's Prometheus metrics: its site's cards, its stream to the gateway, and how its attempts ended.

Owns: the agent's metric names (prefix `fedgate_agent_`) and their registry, read at scrape time from the site
runtime and the gateway link; it changes nothing it reads. Serving, with mTLS off loopback (the site
certificate, scrapers verified against the federation CA), is `fedgate.common.metrics_http`'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agents.core.config import AgentConfig
from agents.core.runtime import SiteRuntime
from fedgate.common.metrics_http import MetricsTls, serve_registry

log = logging.getLogger(__name__)

FAILED_STATES = frozenset({"FAILED", "LOST"})
"""How an attempt that failed ends here: its program failed, or the backend lost it (a node gone)."""


class AgentCollector(Collector):
    def __init__(self, runtime: SiteRuntime, connected: Callable[[], bool]) -> None:
        self.runtime = runtime
        self.connected = connected

    def collect(self) -> Iterator[Metric]:
        runtime = self.runtime
        yield GaugeMetricFamily(
            "fedgate_agent_connected",
            "1 while the gateway has welcomed the agent's current stream.",
            int(self.connected()),
        )
        yield CounterMetricFamily(
            "fedgate_agent_stream_connects",
            "Streams the gateway welcomed since start (the first, then every reconnect).",
            runtime.welcomes,
        )
        capacity = runtime.capacity()
        in_use = runtime.cards_in_use()
        families = {
            kind: GaugeMetricFamily(f"fedgate_agent_{kind}_cards", help_text, labels=["accelerator_class"])
            for kind, help_text in (
                ("offered", "Cards the site offers the federation now (its policy's window), by class."),
                ("free", "Offered cards free now, by class."),
                ("leased", "Cards held by federated jobs (running or gang-held), by class."),
            )
        }
        for pool in capacity:
            families["offered"].add_metric([pool.accelerator_class], pool.offered)
            families["free"].add_metric([pool.accelerator_class], pool.free)
            families["leased"].add_metric([pool.accelerator_class], in_use.get(pool.accelerator_class, 0))
        yield from families.values()
        yield GaugeMetricFamily("fedgate_agent_running_jobs", "Attempts running here now.", len(runtime.running()))
        ended = CounterMetricFamily(
            "fedgate_agent_attempts_ended",
            "Attempts that ended here, by class and final state.",
            labels=["accelerator_class", "state"],
        )
        failures = CounterMetricFamily(
            "fedgate_agent_task_failures",
            "Attempts that ended FAILED or LOST here, by class.",
            labels=["accelerator_class"],
        )
        failed: dict[str, int] = {pool.accelerator_class: 0 for pool in capacity}
        for (cls, state), count in sorted(runtime.ended.items()):
            ended.add_metric([cls, state], count)
            if state in FAILED_STATES:
                failed[cls] = failed.get(cls, 0) + count
        for cls, count in sorted(failed.items()):
            failures.add_metric([cls], count)
        yield ended
        yield failures


def agent_registry(runtime: SiteRuntime, connected: Callable[[], bool]) -> CollectorRegistry:
    """A registry of one agent's metrics (its own: tests run several agents in one process)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(AgentCollector(runtime, connected))
    return registry


async def serve_agent_metrics(
    config: AgentConfig, runtime: SiteRuntime, connected: Callable[[], bool]
) -> asyncio.Server | None:
    """Serve the agent's metrics where its config says (None: nowhere)."""
    if config.metrics is None:
        return None
    tls = MetricsTls(config.tls.ca, config.tls.cert, config.tls.key)
    server = await serve_registry(agent_registry(runtime, connected), config.metrics, tls)
    host, port = server.sockets[0].getsockname()[:2]
    scheme = "https (mTLS)" if config.metrics.mtls else "http"
    log.info("metrics on %s://%s:%d/metrics", scheme, f"[{host}]" if ":" in host else host, port)
    return server
