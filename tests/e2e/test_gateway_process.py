"""The gateway as operators run it: a process that reloads its policy on SIGHUP and stops on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from fedgate.common.yaml import dump_yaml
from gateway.app.config import REPO_POLICIES
from gateway.identity.ca import init_ca
from gateway.identity.principal import Principal
from gateway.transport.client import FederationClient
from gateway.trust.credentials import Credentials
from tests.waiting import eventually


def gateway_config(workdir: Path, **extra: object) -> Path:
    """A gateway config in `workdir` (CA in ca/, server credentials in gw/, the policy in federation.yaml)."""
    config = workdir / "gateway.yaml"
    settings = {
        "apiVersion": "fedgate.io/v1",
        "kind": "Gateway",
        "federation": "demo",
        "listen": "127.0.0.1:0",
        "tls": {"ca": "gw/ca.pem", "cert": "gw/cert.pem", "key": "gw/key.pem"},
        "authority": "ca",
        "store": "sqlite:///gw.db",
        "policy": "federation.yaml",
        **extra,
    }
    config.write_text(dump_yaml(settings))
    return config


def test_sighup_reloads_the_policy_and_sigterm_stops_the_gateway(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca", "demo")
    ca.issue_server(tmp_path / "gw")
    admin = ca.issue(Principal.admin("demo", "root"), tmp_path / "admin")
    policy = tmp_path / "federation.yaml"
    shutil.copy(REPO_POLICIES / "federation.yaml", policy)
    config = gateway_config(tmp_path, policy_watch_s=0)  # only SIGHUP may reload here
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


SCHEDULER_DIES = '''
"""Loaded by this test's gateway process only (PYTHONPATH): its scheduler loop dies once it has started."""
import asyncio

from gateway.scheduler import cycle


async def _dies(self, *args, **kwargs):
    await asyncio.sleep(0.2)
    raise RuntimeError("injected by the test: the scheduler loop broke")


cycle.Scheduler.run = _dies
'''


def test_a_dead_scheduler_loop_stops_the_gateway_process_with_exit_1(tmp_path: Path) -> None:
    """A long-lived task that dies must not leave a gateway that accepts jobs it will never run: the process
    logs which task died and why, and exits 1 for its supervisor to restart it. The fault is injected from
    outside the product (a sitecustomize on this process's PYTHONPATH replaces the loop), not by a hook in it."""
    ca = init_ca(tmp_path / "ca", "demo")
    ca.issue_server(tmp_path / "gw")
    shutil.copy(REPO_POLICIES / "federation.yaml", tmp_path / "federation.yaml")
    config = gateway_config(tmp_path)
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(SCHEDULER_DIES)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(inject), os.environ.get("PYTHONPATH", "")])}
    gateway = subprocess.Popen(
        [sys.executable, "-m", "fedgate.cli", "gateway", "run", "--config", str(config)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = gateway.communicate(timeout=60)
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait()
    assert "serving federation demo" in stderr, stderr  # it had started: the task died under a live gateway
    assert gateway.returncode == 1, stderr
    assert "task 'scheduler' died: RuntimeError: injected by the test" in stderr, stderr
    assert "Traceback" in stderr and "the gateway stops with exit code 1" in stderr, stderr
