"""The gateway as operators run it: a process that reloads its policy on SIGHUP and stops on SIGTERM."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

from gateway.app.config import REPO_POLICIES
from gateway.identity.ca import init_ca
from gateway.identity.principal import Principal
from gateway.transport.client import FederationClient
from gateway.trust.credentials import Credentials
from gateway.yamlload import dump_yaml
from tests.waiting import eventually


def test_sighup_reloads_the_policy_and_sigterm_stops_the_gateway(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca", "demo")
    ca.issue_server(tmp_path / "gw")
    admin = ca.issue(Principal.admin("demo", "root"), tmp_path / "admin")
    policy = tmp_path / "federation.yaml"
    shutil.copy(REPO_POLICIES / "federation.yaml", policy)
    config = tmp_path / "gateway.yaml"
    config.write_text(
        dump_yaml(
            {
                "apiVersion": "fedgate.io/v1",
                "kind": "Gateway",
                "federation": "demo",
                "listen": "127.0.0.1:0",
                "tls": {"ca": "gw/ca.pem", "cert": "gw/cert.pem", "key": "gw/key.pem"},
                "authority": "ca",
                "store": "sqlite:///gw.db",
                "policy": "federation.yaml",
                "policy_watch_s": 0,  # only SIGHUP may reload here
            }
        )
    )
    ready = tmp_path / "ready"
    gateway = subprocess.Popen(
        [sys.executable, "-m", "fedgate.cli", "gateway", "run", "--config", str(config), "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        eventually(lambda: ready.exists() or gateway.poll() is not None, timeout=30, what="the gateway to listen")
        assert ready.exists(), gateway.stderr.read() if gateway.stderr else ""
        with FederationClient(ready.read_text().split()[0], Credentials.from_dir(admin), timeout=10) as client:
            before = client.policy_status()
            policy.write_text(policy.read_text() + "\n# an edit the admin made\n")
            gateway.send_signal(signal.SIGHUP)
            eventually(
                lambda: client.policy_status().version != before.version, timeout=10, what="the policy to reload"
            )
            kinds = [e.kind for e in client.audit_events()]
            assert "policy.reloaded" in kinds
    finally:
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(timeout=20) == 0
