"""The contract from a second language: tests/node/client.mjs, a Node.js client built from the .proto files alone
(@grpc/grpc-js, @grpc/proto-loader), against a real gateway and agent over mTLS and the public port. The script
prints one JSON line per step; this test checks what the issue guarantees a non-Python user: submit (with an
idempotent retry), list with paging, watch to the end, cancel, errors as google.rpc.Status with an ErrorInfo,
and a bearer token on the public port. Skips where node or tests/node/node_modules is missing (fails under
FEDGATE_REQUIRE_SERVICES=1: .ci/run runs `npm ci`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from google.rpc import status_pb2

from tests.conftest import require_service
from tests.integration.harness import AgentHandle, GatewayHandle, start_test_agent, wait_for_capacity

REPO = Path(__file__).resolve().parents[2]
NODE_CLIENT = REPO / "tests" / "node"
# google/rpc/status.proto and error_details.proto: the copies the googleapis-common-protos wheel installs next
# to the Python modules the gateway encodes errors with, so client and server read the same definitions.
GOOGLEAPIS_PROTOS = Path(status_pb2.__file__).resolve().parents[2]
TENANT, PROJECT, ACCELERATOR_CLASS = "deepsea-ai", "llama-sft", "ascend-910b"
RUN_TIMEOUT_S = 60


@pytest.fixture
def ascend_site(gateway: GatewayHandle, tmp_path: Path) -> Iterator[AgentHandle]:
    agent = start_test_agent(
        gateway,
        "centre-a",
        [{"class": ACCELERATOR_CLASS, "cards": 8, "offered": 4, "cards_per_node": 8}],
        tmp_path / "a",
    )
    wait_for_capacity(gateway, "centre-a")
    yield agent
    agent.stop()


@pytest.fixture
def node_command() -> list[str]:
    """How to run the Node client; checked before any server starts."""
    node = shutil.which("node")
    if node is None:
        require_service("Node.js", "no `node` on PATH")
    if not (NODE_CLIENT / "node_modules" / "@grpc" / "grpc-js").is_dir():
        require_service("Node.js client", f"run `npm ci` in {NODE_CLIENT.relative_to(REPO)}")
    assert node is not None
    return [node, str(NODE_CLIENT / "client.mjs")]


def run_node_client(
    node_command: list[str], gateway: GatewayHandle, user: Path, token: str
) -> dict[str, list[dict[str, Any]]]:
    """Run the script once; its JSON lines grouped by step."""
    command = [
        *node_command,
        *("--proto-path", str(REPO / "proto"), "--proto-path", str(GOOGLEAPIS_PROTOS)),
        *("--address", gateway.address, "--public-address", gateway.public_address),
        *(f"--{name}={user / f'{name}.pem'}" for name in ("ca", "cert", "key")),
        *("--tenant", TENANT, "--project", PROJECT, "--class", ACCELERATOR_CLASS),
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        cwd=NODE_CLIENT,
        env={"PATH": os.environ.get("PATH", ""), "FEDGATE_TOKEN": token},
        check=False,
    )
    steps: dict[str, list[dict[str, Any]]] = {}
    for line in done.stdout.splitlines():
        record = json.loads(line)
        steps.setdefault(record.pop("step"), []).append(record)
    assert done.returncode == 0 and "done" in steps, (done.returncode, done.stdout, done.stderr)
    return steps


def error_info(error: dict[str, Any]) -> dict[str, Any]:
    infos = [d for d in error["details"] if d["type"] == "google.rpc.ErrorInfo"]
    assert len(infos) == 1, error
    info: dict[str, Any] = infos[0]
    return info


def test_a_node_client_built_from_the_protos_alone_uses_the_contract(
    node_command: list[str], gateway: GatewayHandle, ascend_site: AgentHandle
) -> None:
    with gateway.client(gateway.pki.admin()) as admin:
        token = admin.issue_token(TENANT, "ci-bot", ttl=timedelta(minutes=5)).token
    steps = run_node_client(node_command, gateway, gateway.pki.user(TENANT, "alice"), token)

    (create,) = steps["create"]
    job_ids = create["job_ids"]
    assert len(set(job_ids)) == 3 and all(state == "JOB_STATE_QUEUED" for state in create["states"])
    assert create["retried_job_id"] == job_ids[0], "a retried request_id must return the job it created"

    (listing,) = steps["list"]
    listed = [job_id for page in listing["pages"] for job_id in page]
    assert len(listing["pages"]) >= 2 and all(len(page) <= 2 for page in listing["pages"]), listing
    assert sorted(listed) == sorted(job_ids), "every job exactly once over the pages"

    (watched,) = steps["watch"]
    states = [event["state"] for event in watched["events"]]
    assert "JOB_STATE_RUNNING" in states and states[-1] == "JOB_STATE_CANCELLED", states
    assert watched["cancel_state"] == "JOB_STATE_CANCELLED"
    recorded = [int(event["sequence"]) for event in watched["events"]]
    assert 0 not in recorded and recorded == sorted(set(recorded)), f"events once each, in order: {recorded}"
    resumed = [int(event["sequence"]) for event in watched["resumed"]]
    assert resumed and resumed == [s for s in recorded if s > recorded[0]][: len(resumed)], (recorded, resumed)
    assert watched["resumed"][-1]["state"] == "JOB_STATE_CANCELLED"

    (cancel,) = steps["cancel"]
    assert cancel["states"] == ["JOB_STATE_CANCELLED"] * 3
    assert {j.job_id: j.state.name for j in gateway.running.core.store.list_jobs(None, page_size=10).jobs} == {
        job_id: "CANCELLED" for job_id in job_ids
    }

    errors = {error["call"]: error for error in steps["error"]}
    unknown = errors["GetJob unknown"]
    assert unknown["code"] == "NOT_FOUND"
    assert error_info(unknown)["reason"] == "JOB_NOT_FOUND" and error_info(unknown)["domain"] == "fedgate.io"
    bad_token = errors["ListJobs bad page token"]
    assert bad_token["code"] == "INVALID_ARGUMENT" and error_info(bad_token)["reason"] == "BAD_PAGE_TOKEN"
    too_long = errors["CreateJob max_runtime over the limit"]
    assert too_long["code"] == "INVALID_ARGUMENT" and error_info(too_long)["reason"] == "BAD_MAX_RUNTIME"
    (bad_request,) = [d for d in too_long["details"] if d["type"] == "google.rpc.BadRequest"]
    assert [v["field"] for v in bad_request["fieldViolations"]] == ["spec.max_runtime"], bad_request

    (public,) = steps["public"]
    assert sorted(job_id for page in public["pages"] for job_id in page) == sorted(job_ids)
    assert public["anonymous"]["code"] == "UNAUTHENTICATED"
