"""The vendor and admin CLI against a real gateway and agent: output formats and exit codes scripts trust."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from gateway.cli import admin as admin_cli
from gateway.cli import config as config_cli
from gateway.cli import creds as creds_cli
from gateway.cli import job as job_cli
from gateway.cli import sites as sites_cli
from gateway.cli import usage as usage_cli
from gateway.cli import version as version_cli
from tests.integration.harness import AgentHandle, GatewayHandle, start_test_agent, wait_for_capacity

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "jobs"


@pytest.fixture
def h20_site(gateway: GatewayHandle, tmp_path: Path) -> Iterator[AgentHandle]:
    pools = [{"class": "nvidia-h20", "cards": 8, "offered": 8, "cards_per_node": 8}]
    agent = start_test_agent(gateway, "centre-c", pools, tmp_path / "c")
    wait_for_capacity(gateway, "centre-c")
    yield agent
    agent.stop()


def flags(gateway: GatewayHandle, creds: Path) -> list[str]:
    return ["--gateway", gateway.address, "--creds", str(creds)]


def test_submit_wait_exits_zero_when_the_job_succeeds_and_prints_json(
    gateway: GatewayHandle, h20_site: AgentHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    bob = flags(gateway, gateway.pki.user("panda-lm", "bob"))
    code = job_cli.main(["submit", "-f", str(EXAMPLES / "smoke-h20.yaml"), "--wait", "-o", "json", *bob])
    assert code == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["state"] == "SUCCEEDED" and row["sites"] == ["centre-c"]
    assert job_cli.main(["get", row["job_id"], "-o", "yaml", *bob]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["job_id"] == row["job_id"]  # one job: an object
    assert job_cli.main(["list", *bob]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:2] == ["JOB", "TENANT"] and row["job_id"] in table


def test_exit_codes(gateway: GatewayHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bob = flags(gateway, gateway.pki.user("panda-lm", "bob"))
    assert job_cli.main(["get", "job-does-not-exist", *bob]) == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: fedgate.io/v1\nkind: Job\nmetadata: {name: x, tenant: panda-lm, project: eval}\n"
        "spec: {resources: {class: nvidia-h20, cards: 1}, runs: [{command: [true]}], colour: red}\n"
    )
    assert job_cli.main(["submit", "-f", str(bad), *bob]) == 2
    assert "colour" in capsys.readouterr().err
    unreachable = ["--gateway", "127.0.0.1:1", "--creds", str(gateway.pki.user("panda-lm", "bob")), "--timeout", "2"]
    assert job_cli.main(["list", *unreachable]) == 3
    wrong_tenant = EXAMPLES / "llama-sft-ascend.yaml"  # a deepsea-ai job submitted by a panda-lm user
    assert job_cli.main(["submit", "-f", str(wrong_tenant), *bob]) == 1
    assert "TENANT_MISMATCH" in capsys.readouterr().err
    assert job_cli.main(["list"]) == 2  # no gateway given
    assert "FEDGATE_GATEWAY" in capsys.readouterr().err


def test_explain_dry_run_names_each_site(
    gateway: GatewayHandle, h20_site: AgentHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    bob = flags(gateway, gateway.pki.user("panda-lm", "bob"))
    assert job_cli.main(["explain", "-f", str(EXAMPLES / "eval-h100.yaml"), "-o", "json", *bob]) == 0
    explanation = json.loads(capsys.readouterr().out)
    assert explanation["admitted"] is True
    [candidate] = explanation["candidates"]
    assert candidate["site"] == "centre-c" and candidate["feasible"] is False
    assert candidate["reasons"][0]["code"] == "NO_MATCHING_POOL"


def test_sites_and_admin_drain(
    gateway: GatewayHandle, h20_site: AgentHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = flags(gateway, gateway.pki.admin())
    assert sites_cli.main(["-o", "json", *admin]) == 0
    assert [r["site"] for r in json.loads(capsys.readouterr().out)] == ["centre-c"]
    assert admin_cli.main(["site", "drain", "centre-c", "-o", "json", *admin]) == 0
    assert json.loads(capsys.readouterr().out)[0]["state"] == "draining"
    assert admin_cli.main(["policy", "status", "-o", "json", *admin]) == 0
    assert json.loads(capsys.readouterr().out)[0]["tenants"] == 2
    bob = flags(gateway, gateway.pki.user("panda-lm", "bob"))
    assert admin_cli.main(["policy", "reload", *bob]) == 1
    assert "PERMISSION_DENIED" in capsys.readouterr().err


def test_a_saved_context_is_enough_to_reach_the_gateway(
    gateway: GatewayHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FEDGATE_CONFIG", str(tmp_path / "fedgate" / "config.yaml"))
    bob = gateway.pki.user("panda-lm", "bob")
    assert config_cli.main(["set-context", "lab", "--gateway", gateway.address, "--creds", str(bob)]) == 0
    assert config_cli.main(["set-context", "nowhere", "--gateway", "127.0.0.1:1", "--creds", str(bob)]) == 0
    assert job_cli.main(["list"]) == 0  # no flags: the current context, lab
    assert usage_cli.main([]) == 0  # receipts verified against the context's CA
    capsys.readouterr()
    assert creds_cli.main(["show", "-o", "json"]) == 0  # the context's credentials directory
    assert json.loads(capsys.readouterr().out)["principal"].endswith("/tenant/panda-lm/user/bob")
    assert sites_cli.main(["--context", "nowhere", "--timeout", "2"]) == 3
    assert sites_cli.main(["--context", "nowhere", "--gateway", gateway.address]) == 0  # a flag beats the context
    assert job_cli.main(["list", "--context", "typo"]) == 2
    assert "known: lab, nowhere" in capsys.readouterr().err


def test_version_asks_the_gateway_what_it_serves_only_when_one_is_given(
    gateway: GatewayHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    assert version_cli.main(["-o", "json"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert alone["client"]["api"] == "fedgate.v1" and alone["gateway"] is None
    assert version_cli.main(["-o", "json", *flags(gateway, gateway.pki.user("panda-lm", "bob"))]) == 0
    asked = json.loads(capsys.readouterr().out)["gateway"]
    assert asked["apis"] == ["fedgate.v1"] and asked["leads"] and asked["compatible"]
    assert asked["version"] is None  # not part of the contract: said, not guessed
    assert version_cli.main(flags(gateway, gateway.pki.user("panda-lm", "bob"))) == 0
    assert "version: not exposed" in capsys.readouterr().out


def test_a_token_file_context_speaks_to_the_public_port(
    gateway: GatewayHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FEDGATE_CONFIG", str(tmp_path / "fedgate" / "config.yaml"))
    with gateway.client(gateway.pki.admin()) as admin:
        token = admin.issue_token("panda-lm", "ci-bot", ttl=timedelta(minutes=5)).token
    (tmp_path / "token").write_text(token + "\n")
    ca = gateway.pki.root / "ca" / "ca.pem"
    ci = ["set-context", "ci", "--gateway", gateway.public_address, "--ca", str(ca), "--token-file", "token"]
    monkeypatch.chdir(tmp_path)  # --token-file token: relative to where the user stands, stored absolute
    assert config_cli.main(ci) == 0
    assert job_cli.main(["list", "-o", "json"]) == 0
    capsys.readouterr()
    assert version_cli.main(["-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["gateway"]["apis"] == ["fedgate.v1"]
