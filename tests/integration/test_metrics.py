"""Metrics: plain HTTP on loopback, mTLS anywhere else (and on loopback when asked); they show what an operator
alerts on; and the Grafana dashboard in the chart queries only metrics a running gateway and agent serve."""

from __future__ import annotations

import json
import logging
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app.config import load_gateway_config
from gateway.errors import ConfigError
from gateway.identity.principal import Principal
from gateway.jobs.model import JobSpec, JobState, Resources, StackRun
from tests.integration.harness import (
    GatewayHandle,
    LoopThread,
    Pki,
    start_test_agent,
    start_test_gateway,
    wait_for_capacity,
)
from tests.waiting import eventually, wait_cycles

DASHBOARD = Path(__file__).resolve().parents[2] / "helm" / "fedgate-gateway" / "files" / "dashboard.json"


def scrape(port: int, context: ssl.SSLContext | None = None) -> str:
    scheme = "https" if context is not None else "http"
    with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/metrics", timeout=5, context=context) as reply:
        return str(reply.read().decode())


def samples(text: str) -> dict[str, float]:
    """Every sample as `name{label="value",...}` (labels sorted) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def test_metrics_show_policy_version_jobs_and_sites(gateway: GatewayHandle) -> None:
    found = samples(scrape(gateway.running.metrics_port))
    version = gateway.running.core.policy.policy.version
    assert found[f'fedgate_policy_info{{version="{version}"}}'] == 1
    assert found['fedgate_policy_reloads_total{outcome="refused"}'] == 0
    assert found["fedgate_sites_connected"] == 0
    assert found['fedgate_authentication_failures_total{port="public"}'] == 0


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
    found = samples(scrape(gateway.running.metrics_port))
    assert found['fedgate_scheduling_cycles_total{outcome="failed"}'] == 1
    assert found['fedgate_scheduling_cycles_total{outcome="completed"}'] >= 2
    assert found["fedgate_scheduling_cycle_seconds_count"] >= 3  # the failed one is timed too


def test_a_refused_reload_shows_in_the_metrics(gateway: GatewayHandle, tmp_path: Path) -> None:
    holder = gateway.running.core.policy
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: fedgate.io/v1\nkind: Federation\nmetadata: {name: itest}\ntenants: [{nmae: x}]\n")
    holder.path = broken
    gateway.running.reload_policy("test")
    found = samples(scrape(gateway.running.metrics_port))
    assert found['fedgate_policy_reloads_total{outcome="refused"}'] == 1
    assert found["fedgate_policy_reload_error"] == 1


def test_a_failing_job_through_an_agent_shows_in_the_metrics(
    gateway: GatewayHandle, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A job that runs on a real agent and fails: admission and dispatch are timed, the task failure and the
    receipt are counted, the site's cards and its stream show on the gateway, and the agent serves its own."""
    caplog.set_level(logging.INFO, logger="agents.transport.metrics")
    pools = [{"class": "ascend-910b", "cards": 4, "offered": 2, "cards_per_node": 4}]
    agent = start_test_agent(gateway, "centre-m", pools, tmp_path / "agent", metrics_listen="127.0.0.1:0")
    try:
        agent_port = agent_metrics_port(caplog)
        wait_for_capacity(gateway, "centre-m")
        failing = JobSpec("deepsea-ai", "llama-sft", Resources("ascend-910b", None, 1), (StackRun("cann", "", FAILS),))
        with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
            job = alice.create_job(failing)
            eventually(lambda: alice.get_job(job.job_id).state == JobState.FAILED, what="the job failed")
        gw = samples(scrape(gateway.running.metrics_port))
        assert gw['fedgate_job_admission_seconds_count{code="OK"}'] == 1
        assert gw["fedgate_job_dispatch_latency_seconds_count"] == 1
        assert gw["fedgate_scheduling_dispatches_total"] == 1
        assert gw['fedgate_task_failures_total{state="FAILED",tenant="deepsea-ai"}'] == 1
        assert gw['fedgate_jobs_ended_total{state="FAILED",tenant="deepsea-ai"}'] == 1
        assert gw['fedgate_receipts_total{outcome="settled"}'] == 1
        assert gw['fedgate_site_offered_cards{accelerator_class="ascend-910b",site="centre-m"}'] == 2
        assert gw['fedgate_site_stream_connects_total{site="centre-m"}'] == 1
        assert gw["fedgate_sites_connected"] == 1
        ag = samples(scrape(agent_port))
        assert ag["fedgate_agent_connected"] == 1
        assert ag['fedgate_agent_offered_cards{accelerator_class="ascend-910b"}'] == 2
        assert ag['fedgate_agent_task_failures_total{accelerator_class="ascend-910b"}'] == 1
        assert ag["fedgate_agent_stream_connects_total"] == 1
    finally:
        agent.stop()


FAILS = ("python3", "-c", "raise SystemExit(3)")


def agent_metrics_port(caplog: pytest.LogCaptureFixture) -> int:
    """The port the agent's metrics server bound (port 0 in its config), from its log line."""

    def logged() -> int | None:
        for record in caplog.records:
            if match := re.search(r"metrics on https?[^:]*://127\.0\.0\.1:(\d+)/metrics", record.getMessage()):
                return int(match.group(1))
        return None

    eventually(logged, what="the agent's metrics log line")
    port = logged()
    assert port is not None
    return port


# ---- mTLS --------------------------------------------------------------------------------------------------
@pytest.fixture
def mtls_gateway(pki: Pki, loop: LoopThread, tmp_path: Path) -> Iterator[GatewayHandle]:
    """A gateway whose metrics ask for mTLS on loopback (off loopback that is the only way they are served)."""
    handle = start_test_gateway(pki, tmp_path, loop, extra={"metrics_mtls": True})
    yield handle
    handle.stop()


def client_context(pki: Pki, creds: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.root / "ca" / "ca.pem"))
    if creds is not None:
        context.load_cert_chain(creds / "cert.pem", creds / "key.pem")
    return context


def test_metrics_over_mtls_need_a_client_certificate_of_the_federation(mtls_gateway: GatewayHandle) -> None:
    pki, port = mtls_gateway.pki, mtls_gateway.running.metrics_port
    text = scrape(port, client_context(pki, pki.admin()))
    assert "fedgate_sites_connected" in text
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        scrape(port, client_context(pki, None))  # no client certificate: the handshake is refused
    foreign = pki.root / "issued" / "foreign-scraper"
    pki.foreign.issue(Principal.admin("itest", "root"), foreign)
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        scrape(port, client_context(pki, foreign))  # another CA's certificate
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        scrape(port)  # plain HTTP to the TLS port


def write_config(tmp_path: Path, metrics: str) -> Path:
    config = tmp_path / "gateway.yaml"
    for name in ("ca", "cert", "key"):
        (tmp_path / f"{name}.pem").write_text("x")
    (tmp_path / "authority").mkdir(exist_ok=True)
    config.write_text(
        "apiVersion: fedgate.io/v1\nkind: Gateway\nfederation: itest\nlisten: 127.0.0.1:0\n"
        f"tls: {{ca: ca.pem, cert: cert.pem, key: key.pem}}\nauthority: authority\n{metrics}"
    )
    return config


def test_metrics_beyond_loopback_are_served_with_mtls_only(tmp_path: Path) -> None:
    endpoint = load_gateway_config(write_config(tmp_path, "metrics_listen: 0.0.0.0:9464\n")).metrics
    assert endpoint is not None and endpoint.mtls and endpoint.host == "0.0.0.0"
    loopback = load_gateway_config(write_config(tmp_path, "metrics_listen: '[::1]:9464'\n")).metrics
    assert loopback is not None and not loopback.mtls
    with pytest.raises(ConfigError, match="not a loopback address and metrics off loopback need mTLS"):
        load_gateway_config(write_config(tmp_path, "metrics_listen: 0.0.0.0:9464\nmetrics_mtls: false\n"))
    with pytest.raises(ConfigError, match="is not an IP address"):
        load_gateway_config(write_config(tmp_path, "metrics_listen: metrics.example.org:9464\n"))


# ---- the dashboard -----------------------------------------------------------------------------------------
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless",
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "inf", "nan",
}  # fmt: skip


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are not functions, keywords, label names
    (inside `{}` or after by/without/on/ignoring), durations, strings or numbers."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names: set[str] = set()
    for match in re.finditer(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if not call and name.lower() not in PROMQL_WORDS:
            names.add(name)
    return names


def test_the_promql_name_reader_finds_names_and_skips_the_rest() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, site) (rate(fedgate_x_bucket{site=~"a|b", le!="inf"}[$__rate_interval])))'
        " / on (site) group_left max without (tenant) (fedgate_y) > bool 2 or vector(0) + fedgate_z offset 5m"
    )
    assert promql_metric_names(expr) == {"fedgate_x_bucket", "fedgate_y", "fedgate_z"}


def exposed_names(text: str) -> set[str]:
    """Every series name a scrape makes queryable, counting those of a family with no sample yet (a histogram
    with labels and no observation): `_total` of counters, `_bucket`, `_sum`, `_count` of histograms."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "info": ("_info",)}
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def test_every_dashboard_query_names_metrics_a_running_gateway_and_agent_serve(
    gateway: GatewayHandle, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agents.transport.metrics")
    pools = [{"class": "ascend-910b", "cards": 2, "offered": 2, "cards_per_node": 2}]
    agent = start_test_agent(gateway, "centre-d", pools, tmp_path / "agent", metrics_listen="127.0.0.1:0")
    try:
        wait_for_capacity(gateway, "centre-d")  # the site's families have samples once it reported
        served = exposed_names(scrape(gateway.running.metrics_port)) | exposed_names(scrape(agent_metrics_port(caplog)))
    finally:
        agent.stop()
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in [*panel.get("targets", []), *(t for p in panel.get("panels", []) for t in p.get("targets", []))]
    ]
    assert len(queries) >= 20
    named = {name: expr for expr in queries for name in promql_metric_names(expr)}
    assert {n for n in named if n.startswith("fedgate_agent_")}, "the dashboard shows the agents too"
    missing = {name: expr for name, expr in named.items() if name not in served}
    assert not missing, f"dashboard queries name metrics no running gateway or agent serves: {missing}"
