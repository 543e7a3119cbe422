"""Joint projects on a real gateway: members from several tenants see and act on every job of the project,
whichever tenant submitted it; a viewer of the project reads only; everyone else learns nothing about it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.errors import ClientError
from gateway.jobs.model import JobSpec, JobState, Resources, StackRun
from tests.integration.harness import GatewayHandle, LoopThread, Pki
from tests.integration.test_policy_reload import start_gateway_with_policy

POLICY = """apiVersion: fedgate.io/v1
kind: Federation
metadata: {name: joint}
tenants:
  - name: deepsea-ai
    projects: [{name: llama-sft}]
  - name: panda-lm
    projects: [{name: eval}]
    members:
      - {user: bob, role: member}
      - {user: carol, role: viewer}
      - {user: ci-bot, role: member, projects: [eval]}
  - name: ocean-lab
    projects: [{name: ocean}]
projects:
  - name: open-moe
    members:
      - {tenant: deepsea-ai}
      - {tenant: panda-lm, user: bob}
      - {tenant: ocean-lab, role: viewer}
"""


def spec(tenant: str, project: str = "open-moe") -> JobSpec:
    return JobSpec(tenant, project, Resources("ascend-910b", None, 1), (StackRun("cann", "", ("true",)),))


@pytest.fixture
def gateway(pki: Pki, loop: LoopThread, tmp_path: Path) -> Iterator[GatewayHandle]:
    policy = tmp_path / "federation.yaml"
    policy.write_text(POLICY)
    handle = start_gateway_with_policy(pki, tmp_path, loop, policy)
    yield handle
    handle.stop()


def test_members_from_each_tenant_see_every_job_of_the_project(gateway: GatewayHandle) -> None:
    with (
        gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice,
        gateway.client(gateway.pki.user("panda-lm", "bob")) as bob,
    ):
        by_alice = alice.create_job(spec("deepsea-ai"))
        by_bob = bob.create_job(spec("panda-lm"))
        own = alice.create_job(spec("deepsea-ai", "llama-sft"))
        assert bob.get_job(by_alice.job_id).spec.tenant == "deepsea-ai"
        assert alice.get_job(by_bob.job_id).spec.tenant == "panda-lm"
        assert {j.job_id for j in alice.list_jobs()} == {by_alice.job_id, by_bob.job_id, own.job_id}
        assert {j.job_id for j in bob.list_jobs()} == {by_alice.job_id, by_bob.job_id}
        assert {j.job_id for j in bob.list_jobs(project="open-moe")} == {by_alice.job_id, by_bob.job_id}
        with pytest.raises(ClientError) as hidden:
            bob.get_job(own.job_id)  # deepsea-ai's own project stays deepsea-ai's
        assert hidden.value.code == "NOT_FOUND"


def test_members_act_on_jobs_other_tenants_submitted(gateway: GatewayHandle) -> None:
    with (
        gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice,
        gateway.client(gateway.pki.user("panda-lm", "bob")) as bob,
    ):
        job = alice.create_job(spec("deepsea-ai"))
        assert bob.cancel_job(job.job_id, "superseded by a larger run").state == JobState.CANCELLED
        assert alice.get_job(job.job_id).state == JobState.CANCELLED


def test_a_viewer_of_the_project_reads_but_does_not_act(gateway: GatewayHandle) -> None:
    with (
        gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice,
        gateway.client(gateway.pki.user("ocean-lab", "olga")) as olga,
    ):
        job = alice.create_job(spec("deepsea-ai"))
        assert olga.get_job(job.job_id).job_id == job.job_id
        assert [j.job_id for j in olga.list_jobs()] == [job.job_id]
        with pytest.raises(ClientError) as refused:
            olga.cancel_job(job.job_id)
        assert refused.value.reason == "READ_ONLY"
        with pytest.raises(ClientError) as refused:
            olga.create_job(spec("ocean-lab"))
        assert refused.value.reason == "READ_ONLY"


@pytest.mark.parametrize("user", ["ci-bot", "carol"])
def test_users_outside_the_project_learn_nothing_of_it(gateway: GatewayHandle, user: str) -> None:
    with (
        gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice,
        gateway.client(gateway.pki.user("panda-lm", user)) as outsider,
    ):
        job = alice.create_job(spec("deepsea-ai"))
        with pytest.raises(ClientError) as hidden:
            outsider.get_job(job.job_id)
        assert hidden.value.code == "NOT_FOUND"
        assert job.job_id not in {j.job_id for j in outsider.list_jobs()}
        with pytest.raises(ClientError) as refused:
            outsider.create_job(spec("panda-lm"))
        assert refused.value.reason == "NOT_A_MEMBER"


def test_members_may_ask_why_a_job_of_another_tenant_waits(gateway: GatewayHandle) -> None:
    with (
        gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice,
        gateway.client(gateway.pki.user("panda-lm", "bob")) as bob,
    ):
        job = alice.create_job(spec("deepsea-ai"))
        explanation = bob.explain_job(job.job_id)
        assert explanation.admitted, explanation.reasons
        assert explanation.reasons[0].code == "ADMITTED"


def test_usage_of_a_joint_project_is_visible_to_every_member_and_no_one_else(
    gateway: GatewayHandle, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from gateway.jobs.model import JobSpec, JobState, Resources, StackRun
    from tests.integration.harness import start_test_agent, wait_for_capacity
    from tests.waiting import eventually

    pools = [{"class": "ascend-910b", "cards": 8, "offered": 8, "cards_per_node": 8}]
    agent = start_test_agent(gateway, "centre-a", pools, tmp_path / "a")
    try:
        wait_for_capacity(gateway, "centre-a")
        joint = JobSpec("deepsea-ai", "open-moe", Resources("ascend-910b", None, 2), (StackRun("cann", "", ("true",)),))
        with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
            job = alice.create_job(joint)
            eventually(lambda: alice.get_job(job.job_id).state == JobState.SUCCEEDED, what="the joint job to end")
        since = datetime.now(UTC) - timedelta(hours=1)
        with gateway.client(gateway.pki.user("panda-lm", "bob")) as bob:
            [row] = bob.usage(since)
        assert (row.tenant, row.project, row.accelerator_class, row.attempts) == (
            "deepsea-ai",
            "open-moe",
            "ascend-910b",
            1,
        )
        assert row.card_hours > 0 and row.normalised_pflops_hours > row.card_hours * 0.3 - 1e-9
        with gateway.client(gateway.pki.user("panda-lm", "carol")) as carol:
            assert carol.usage(since) == []  # not in the joint project
    finally:
        agent.stop()
