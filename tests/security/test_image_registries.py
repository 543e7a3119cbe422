"""A centre that names its registries (`policy.image_registries`) gets only images from them, as an attacker would
try it against a real gateway and a real agent: a reference that climbs out of an allowed registry
(`registry.example.org/../evil.io/x`, which a string-prefix test passed), a lookalike host, and a bare command
(which runs whatever the machine has) are never placed there: refused at admission when not a reference at all,
otherwise left QUEUED with the site's terms named. An image from the registry runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.errors import ClientError
from gateway.jobs.model import JobSpec, JobState, Resources, StackRun
from tests.integration.harness import AgentHandle, GatewayHandle, start_test_agent, wait_for_capacity
from tests.waiting import eventually, wait_cycles

REGISTRY = "registry.example.org"


def spec(image: str) -> JobSpec:
    return JobSpec(
        "panda-lm", "eval", Resources("ascend-910b", None, 1), (StackRun("cann", image, ("python3", "-c", "pass")),)
    )


@pytest.fixture
def strict_site(gateway: GatewayHandle, tmp_path: Path) -> Iterator[AgentHandle]:
    pools: list[dict[str, object]] = [{"class": "ascend-910b", "cards": 4, "offered": 4, "cards_per_node": 4}]
    agent = start_test_agent(gateway, "centre-a", pools, tmp_path / "a", policy={"image_registries": [REGISTRY]})
    wait_for_capacity(gateway, "centre-a")
    yield agent
    agent.stop()


@pytest.mark.parametrize(
    "image",
    [
        f"{REGISTRY}/../evil.io/x",
        f"{REGISTRY}/team/../../evil.io/x:1",
        f"{REGISTRY}.evil.io/x",
        f"{REGISTRY}:5001/x",
        "",  # a bare command
    ],
    ids=["climbs out", "climbs out deeper", "lookalike host", "another port", "bare command"],
)
def test_an_image_from_outside_the_centres_registries_never_runs_there(
    gateway: GatewayHandle, strict_site: AgentHandle, image: str
) -> None:
    with gateway.client(gateway.pki.user("panda-lm", "bob")) as bob:
        try:
            job = bob.create_job(spec(image))
        except ClientError as exc:  # not an image reference at all: refused before anything is stored
            assert (exc.code, exc.reason) == ("INVALID_ARGUMENT", "JOB_SPEC_INVALID"), exc
            return
        eventually(
            lambda: any(r.code == "SITE_TERMS" for r in bob.get_job(job.job_id).reasons),
            what="a reason naming the site's terms",
        )
        wait_cycles(gateway, 5)
        waiting = bob.get_job(job.job_id)
    assert waiting.state == JobState.QUEUED, waiting.reasons
    states = [e.state for e in gateway.running.core.store.events(job.job_id)]
    assert JobState.DISPATCHED not in states and JobState.RUNNING not in states, states


def test_an_image_from_the_centres_registry_runs(gateway: GatewayHandle, strict_site: AgentHandle) -> None:
    with gateway.client(gateway.pki.user("panda-lm", "bob")) as bob:
        job = bob.create_job(spec(f"{REGISTRY}/panda/eval:1"))
        eventually(lambda: bob.get_job(job.job_id).state == JobState.SUCCEEDED, timeout=30, what="the job to run")
