"""What the gateway chart promises: a config file fedgate accepts, SQLite for one gateway and PostgreSQL from a
Secret for several, readiness on the leader only, the catalogue shipped with fedgate, a dashboard when there is
one."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.app.config import KEYS
from gateway.policy.document import REPO_POLICIES, load_catalogue, load_policy
from tests.helm.charts import GATEWAY, by_kind, examples, manifests, values_of

POSTGRES = {"replicas": 3, "store": {"type": "postgresql", "postgresql": {"secretName": "fedgate-store"}}}


def config_map(docs: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = next(d for d in by_kind(docs, "ConfigMap") if "gateway.yaml" in d["data"])["data"]
    return data


def pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"])


def test_the_config_file_names_only_keys_the_gateway_knows() -> None:
    for values in [{}, POSTGRES, *(values_of(e) for e in examples(GATEWAY))]:
        config = yaml.safe_load(config_map(manifests(GATEWAY, values))["gateway.yaml"])
        assert set(config) <= KEYS, set(config) - KEYS
        assert (config["apiVersion"], config["kind"]) == ("fedgate.io/v1", "Gateway")


def test_one_gateway_keeps_its_sqlite_store_on_a_claim() -> None:
    docs = manifests(GATEWAY)
    config = yaml.safe_load(config_map(docs)["gateway.yaml"])
    assert config["store"] == "sqlite:////var/lib/fedgate/gateway.db"
    (claim,) = by_kind(docs, "PersistentVolumeClaim")
    data = next(v for v in pod(docs)["volumes"] if v["name"] == "data")
    assert data["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert by_kind(docs, "Deployment")[0]["spec"]["replicas"] == 1


def test_standby_gateways_read_the_postgresql_url_from_its_secret_never_from_a_config_map() -> None:
    docs = manifests(GATEWAY, POSTGRES)
    assert "store" not in yaml.safe_load(config_map(docs)["gateway.yaml"])
    assert "postgresql" not in str(by_kind(docs, "ConfigMap"))
    (init,) = pod(docs)["initContainers"]
    (env,) = init["env"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "fedgate-store", "key": "url"}
    assert pod(docs)["containers"][0]["args"][-1] == "/run/fedgate/gateway.yaml"
    assert by_kind(docs, "Deployment")[0]["spec"]["replicas"] == 3
    assert not by_kind(docs, "PersistentVolumeClaim")


def test_the_init_container_writes_a_url_yaml_reads_back_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The URL goes into YAML as a JSON string: whatever a password holds, the gateway reads the same URL."""
    (init,) = pod(manifests(GATEWAY, POSTGRES))["initContainers"]
    script = init["command"][-1].replace("/etc/fedgate/config", str(tmp_path)).replace("/run/fedgate", str(tmp_path))
    (tmp_path / "gateway.yaml").write_text("kind: Gateway\n")
    url = "postgresql://fedgate:p@ss: #\"'\\{x}é@db:5432/fedgate"
    monkeypatch.setenv("FEDGATE_STORE_URL", url)
    exec(script, {})  # the container's own code
    assert yaml.safe_load((tmp_path / "gateway.yaml").read_text())["store"] == url


def test_readiness_asks_the_public_port_for_the_job_service_and_liveness_only_that_it_listens() -> None:
    container = pod(manifests(GATEWAY))["containers"][0]
    command = container["readinessProbe"]["exec"]["command"]
    assert command[:2] == ["python3", "/etc/fedgate/config/health_probe.py"]
    assert command[command.index("--port") + 1] == "7444"
    assert command[command.index("--service") + 1] == "fedgate.v1.JobService"
    assert container["livenessProbe"]["tcpSocket"] == {"port": "grpc-mtls"}


def test_the_policy_and_the_catalogue_it_renders_are_ones_fedgate_loads(tmp_path: Path) -> None:
    for values in [{}, *(values_of(e) for e in examples(GATEWAY))]:
        data = config_map(manifests(GATEWAY, values))
        (tmp_path / "federation.yaml").write_text(data["federation.yaml"])
        (tmp_path / "accelerators.yaml").write_text(data["accelerators.yaml"])
        load_catalogue(tmp_path / "accelerators.yaml")
        load_policy(tmp_path / "federation.yaml")


def test_the_chart_ships_fedgate_s_own_catalogue() -> None:
    assert (GATEWAY / "files" / "accelerators.yaml").read_text() == (REPO_POLICIES / "accelerators.yaml").read_text()


def test_services_select_the_gateway_pods_on_both_ports() -> None:
    docs = manifests(GATEWAY)
    labels = by_kind(docs, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    ports = {}
    for service in by_kind(docs, "Service"):
        assert service["spec"]["selector"].items() <= labels.items()
        ports.update({p["name"]: p["port"] for p in service["spec"]["ports"]})
    assert ports == {"grpc-mtls": 7443, "grpc-public": 7444}


def test_metrics_bring_a_scraped_service_and_a_service_monitor() -> None:
    docs = manifests(GATEWAY, values_of(GATEWAY / "examples" / "standby-postgresql.yaml"))
    (monitor,) = by_kind(docs, "ServiceMonitor")
    metrics = [s for s in by_kind(docs, "Service") if s["metadata"]["labels"].get("fedgate.io/metrics") == "true"]
    assert len(metrics) == 1
    assert monitor["spec"]["selector"]["matchLabels"].items() <= metrics[0]["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["scheme"] == "https"


def test_the_status_page_gets_its_config_key_a_port_a_service_and_an_ingress_rule() -> None:
    assert "status_listen" not in yaml.safe_load(config_map(manifests(GATEWAY))["gateway.yaml"])
    docs = manifests(GATEWAY, {"statusPage": {"enabled": True, "port": 9443}})
    assert yaml.safe_load(config_map(docs)["gateway.yaml"])["status_listen"] == "0.0.0.0:9443"
    (container,) = pod(docs)["containers"]
    assert {"name": "status", "containerPort": 9443, "protocol": "TCP"} in container["ports"]
    (service,) = [s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-status")]
    (port,) = service["spec"]["ports"]
    assert port == {"name": "https-status", "port": 9443, "targetPort": "status", "protocol": "TCP"}
    (policy,) = by_kind(docs, "NetworkPolicy")
    assert any({"port": "status", "protocol": "TCP"} in rule["ports"] for rule in policy["spec"]["ingress"])


def test_the_dashboard_config_map_appears_only_with_a_dashboard(tmp_path: Path) -> None:
    chart = tmp_path / GATEWAY.name
    shutil.copytree(GATEWAY, chart)
    (chart / "files" / "dashboard.json").unlink(missing_ok=True)
    assert not [d for d in manifests(chart) if d["metadata"]["name"].endswith("-dashboard")]
    (chart / "files" / "dashboard.json").write_text('{"title": "fedgate"}\n')
    (dashboard,) = [d for d in manifests(chart) if d["metadata"]["name"].endswith("-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"] == {"fedgate-gateway.json": '{"title": "fedgate"}\n'}
