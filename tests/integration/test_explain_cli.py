"""`fedgate job explain JOB` and `fedgate job explain -f job.yaml` (a dry run) end to end: a real gateway, two
real agents, the CLI's exit codes and its JSON, and every link of the reason chain down to FRAGMENTED."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import job as job_cli
from tests.integration.harness import AgentHandle, GatewayHandle, start_test_agent, wait_for_capacity

JOB = """\
apiVersion: fedgate.io/v1
kind: Job
metadata: {name: wide, tenant: panda-lm, project: inference}
spec:
  resources: {class: nvidia-h20, cards: 6}
  runs: [{stack: cuda, command: [python3, -c, "pass"]}]
  maxRuntime: 60s
"""


@pytest.fixture
def two_small_sites(gateway: GatewayHandle, tmp_path: Path) -> Iterator[list[AgentHandle]]:
    """Two centres offering 4 H20 cards each: 8 free in all, never 6 at one."""
    pools = [{"class": "nvidia-h20", "cards": 4, "offered": 4, "cards_per_node": 4}]
    agents = [start_test_agent(gateway, name, pools, tmp_path / name) for name in ("centre-a", "centre-b")]
    for name in ("centre-a", "centre-b"):
        wait_for_capacity(gateway, name)
    yield agents
    for agent in agents:
        agent.stop()


def flags(gateway: GatewayHandle) -> list[str]:
    return ["--gateway", gateway.address, "--creds", str(gateway.pki.user("panda-lm", "bob"))]


def codes(record: dict[str, object]) -> list[str]:
    reasons = record["reasons"]
    assert isinstance(reasons, list)
    return [r["code"] for r in reasons]


def test_a_dry_run_and_a_queued_job_explain_the_whole_chain_down_to_fragmentation(
    gateway: GatewayHandle, two_small_sites: list[AgentHandle], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "wide.yaml"
    spec.write_text(JOB, encoding="utf-8")
    bob = flags(gateway)

    assert job_cli.main(["explain", "-f", str(spec), "-o", "json", *bob]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["admitted"] is True
    assert codes(dry) == ["ADMITTED", "OFFER_TOO_SMALL", "OFFER_TOO_SMALL", "FRAGMENTED"]
    assert {c["site"]: c["feasible"] for c in dry["candidates"]} == {"centre-a": False, "centre-b": False}

    assert job_cli.main(["submit", "-f", str(spec), "-o", "json", *bob]) == 0
    [submitted] = json.loads(capsys.readouterr().out)
    assert job_cli.main(["explain", submitted["job_id"], "-o", "json", *bob]) == 0
    explained = json.loads(capsys.readouterr().out)
    assert explained["admitted"] is True and codes(explained)[0] == "ADMITTED"
    assert codes(explained)[-1] == "FRAGMENTED"
    fragmented = explained["reasons"][-1]
    assert fragmented["stage"] == "capacity" and "8 nvidia-h20 cards are free across 2 sites" in fragmented["message"]

    # The pending job itself carries the same live chain, and the table view names it too.
    assert job_cli.main(["get", submitted["job_id"], "-o", "json", *bob]) == 0
    queued = json.loads(capsys.readouterr().out)
    assert queued["state"] == "QUEUED" and codes(queued)[-1] == "FRAGMENTED"
    assert queued["reason"].startswith("8 nvidia-h20 cards are free across 2 sites")  # the table's last word
    assert job_cli.main(["explain", submitted["job_id"], *bob]) == 0
    assert "FRAGMENTED" in capsys.readouterr().out


def test_explaining_a_job_that_policy_refuses_exits_1_with_the_policy_reason(
    gateway: GatewayHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "elsewhere.yaml"
    spec.write_text(JOB.replace("project: inference", "project: no-such-project"), encoding="utf-8")
    assert job_cli.main(["explain", "-f", str(spec), "-o", "json", *flags(gateway)]) == 1
    refused = json.loads(capsys.readouterr().out)
    assert refused["admitted"] is False and codes(refused) == ["UNKNOWN_PROJECT"]


def test_explaining_an_unknown_job_exits_4(gateway: GatewayHandle, capsys: pytest.CaptureFixture[str]) -> None:
    assert job_cli.main(["explain", "job-does-not-exist", *flags(gateway)]) == 4
    assert "JOB_NOT_FOUND" in capsys.readouterr().err
