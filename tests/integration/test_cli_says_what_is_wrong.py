"""The CLI says what is wrong, against a real gateway and agent: a job that cannot fit shows why it waits under
--wait and gives up after --timeout (exit 6); a finished job's reason says how it ended; `job get -o json` is one
object; draining a site nobody knows is refused instead of creating a phantom site."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import admin as admin_cli
from gateway.cli import job as job_cli
from gateway.cli import sites as sites_cli
from tests.integration.harness import AgentHandle, GatewayHandle, start_test_agent, wait_for_capacity

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "jobs"
EXIT_NOT_FOUND, EXIT_TIMEOUT = 4, 6


@pytest.fixture
def h20_site(gateway: GatewayHandle, tmp_path: Path) -> Iterator[AgentHandle]:
    pools = [{"class": "nvidia-h20", "cards": 16, "offered": 16, "cards_per_node": 8}]
    agent = start_test_agent(gateway, "centre-c", pools, tmp_path / "c")
    wait_for_capacity(gateway, "centre-c")
    yield agent
    agent.stop()


def flags(gateway: GatewayHandle, creds: Path) -> list[str]:
    return ["--gateway", gateway.address, "--creds", str(creds)]


def test_wait_on_a_job_that_cannot_fit_shows_why_and_gives_up_after_the_timeout(
    gateway: GatewayHandle, h20_site: AgentHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "big.yaml"
    big.write_text((EXAMPLES / "smoke-h20.yaml").read_text().replace("cards: 1", "cards: 64"))  # 16 in the federation
    bob = flags(gateway, gateway.pki.user("panda-lm", "bob"))
    result: list[int] = []
    waiting = threading.Thread(
        target=lambda: result.append(
            job_cli.main(["submit", "-f", str(big), "--wait", "--timeout", "1.5", "-o", "json", *bob])
        ),
        daemon=True,  # without an overall timeout it would wait for ever: the test fails instead of hanging
    )
    waiting.start()
    waiting.join(30)
    assert result, "--wait --timeout 1.5 was still waiting after 30 s"
    [code] = result
    captured = capsys.readouterr()
    assert code == EXIT_TIMEOUT, captured.err
    assert "centre-c offers 16 nvidia-h20 cards to the federation; the job needs 64" in captured.err
    assert "gave up waiting after 1.5s; the job goes on" in captured.err
    [row] = json.loads(captured.out)
    assert row["state"] == "QUEUED"


def test_a_finished_job_says_how_it_ended_and_get_prints_one_object(
    gateway: GatewayHandle, h20_site: AgentHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    bob = flags(gateway, gateway.pki.user("panda-lm", "bob"))
    assert job_cli.main(["submit", "-f", str(EXAMPLES / "smoke-h20.yaml"), "--wait", "-o", "json", *bob]) == 0
    [done] = json.loads(capsys.readouterr().out)
    assert job_cli.main(["get", done["job_id"], "-o", "json", *bob]) == 0
    job = json.loads(capsys.readouterr().out)
    assert isinstance(job, dict) and job["job_id"] == done["job_id"]
    # Not the placement it waited for ("placed on centre-c ...") but how it ended.
    assert job["reason"] == "exited with code 0" and [r["code"] for r in job["reasons"]] == ["JOB_ENDED"]


def test_draining_a_site_nobody_knows_is_refused_and_leaves_no_phantom_site(
    gateway: GatewayHandle, h20_site: AgentHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = flags(gateway, gateway.pki.admin())
    assert admin_cli.main(["site", "drain", "centre-cc", *admin]) == EXIT_NOT_FOUND
    err = capsys.readouterr().err
    assert "site 'centre-cc' is not known" in err
    known = err.split("known sites: ", 1)[1].split(" [", 1)[0].split(", ")
    assert "centre-c" in known and "centre-cc" not in known  # the connected one, and those the policy names
    assert sites_cli.main(["-o", "json", *admin]) == 0
    assert {row["site"] for row in json.loads(capsys.readouterr().out)} == {"centre-c"}


def test_join_tokens_tokens_and_revocations_can_be_listed_without_their_secrets(
    gateway: GatewayHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = flags(gateway, gateway.pki.admin())
    assert admin_cli.main(["join-token", "create", "--site", "centre-d", "-o", "json", *admin]) == 0
    join_token = json.loads(capsys.readouterr().out)["join_token"]
    assert admin_cli.main(["token", "issue", "--tenant", "panda-lm", "--user", "ci-bot", "-o", "json", *admin]) == 0
    issued = json.loads(capsys.readouterr().out)
    assert admin_cli.main(["revoke", "--token-id", issued["token_id"], "--reason", "leaked", *admin]) == 0
    capsys.readouterr()

    assert admin_cli.main(["join-token", "list", "-o", "json", *admin]) == 0
    text = capsys.readouterr().out
    [joins] = json.loads(text)
    assert joins["site"] == "centre-d" and joins["state"] == "unused" and join_token not in text
    assert admin_cli.main(["token", "list", "-o", "json", *admin]) == 0
    text = capsys.readouterr().out
    [token] = json.loads(text)
    assert token["token_id"] == issued["token_id"] and token["state"] == "revoked" and issued["token"] not in text
    assert token["subject"].endswith("/tenant/panda-lm/user/ci-bot")
    assert admin_cli.main(["revocation", "list", *admin]) == 0
    table = capsys.readouterr().out
    assert table.split()[:5] == ["KIND", "VALUE", "TIME", "REASON", "BY"]
    assert f"token  {issued['token_id']}" in table and "leaked" in table
