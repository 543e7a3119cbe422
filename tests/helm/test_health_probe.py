"""The gateway chart's readiness check (files/health_probe.py, run in the pod by an exec probe) against a real
gateway over TLS: SERVING for the leader's JobService, refused for a name the port does not serve, and not ready
once the gateway stops."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from tests.helm.charts import GATEWAY
from tests.integration.harness import GatewayHandle


def probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("health_probe", GATEWAY / "files" / "health_probe.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_probe_finds_the_leader_s_job_service_serving_on_the_public_port(gateway: GatewayHandle) -> None:
    tls = str(gateway.pki.root / "gateway")
    port = gateway.running.public_port
    assert probe().check(port, "fedgate.v1.JobService", tls) == (True, "fedgate.v1.JobService: SERVING")
    serving, what = probe().check(port, "fedgate.v1.AdminService", tls)  # not served on the public port
    assert not serving and "NOT_FOUND" in what


def test_the_probe_says_not_ready_when_nothing_answers(gateway: GatewayHandle) -> None:
    tls = str(gateway.pki.root / "gateway")
    port = gateway.running.public_port
    gateway.stop()
    serving, what = probe().check(port, "fedgate.v1.JobService", tls, timeout=1.0)
    assert not serving and "UNAVAILABLE" in what
