"""Roles inside a tenant: members act, viewers read, and a member list keeps everyone else out."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.errors import ClientError
from gateway.jobs.model import JobSpec, JobState, Resources, StackRun
from tests.integration.harness import GatewayHandle

EVAL = JobSpec(
    tenant="panda-lm",
    project="eval",
    resources=Resources("nvidia-h100", None, 1),
    runs=(StackRun("cuda", "", ("true",)),),
)


def test_viewer_reads_but_cannot_submit_or_cancel(gateway: GatewayHandle) -> None:
    with (
        gateway.client(gateway.pki.user("panda-lm", "bob")) as bob,
        gateway.client(gateway.pki.user("panda-lm", "carol")) as carol,
    ):
        job = bob.create_job(EVAL)
        assert carol.get_job(job.job_id).job_id == job.job_id
        assert [j.job_id for j in carol.list_jobs()] == [job.job_id]
        acts: tuple[Callable[[], object], ...] = (lambda: carol.create_job(EVAL), lambda: carol.cancel_job(job.job_id))
        for act in acts:
            with pytest.raises(ClientError) as refused:
                act()
            assert refused.value.code == "PERMISSION_DENIED" and refused.value.reason == "READ_ONLY"
        assert bob.get_job(job.job_id).state == JobState.QUEUED


def test_user_missing_from_the_member_list_is_refused(gateway: GatewayHandle) -> None:
    with gateway.client(gateway.pki.user("panda-lm", "mallory")) as mallory, pytest.raises(ClientError) as refused:
        mallory.create_job(EVAL)
    assert refused.value.reason == "NOT_A_MEMBER"
    assert gateway.running.core.store.list_jobs(None).jobs == ()


def test_viewer_token_reads_but_cannot_act(gateway: GatewayHandle) -> None:
    with gateway.client(gateway.pki.admin()) as admin, gateway.client(gateway.pki.user("panda-lm", "bob")) as bob:
        job = bob.create_job(EVAL)
        token = admin.issue_token("panda-lm", "ci-bot", role="viewer").token
    with gateway.token_client(token) as ci:
        assert ci.get_job(job.job_id).job_id == job.job_id
        with pytest.raises(ClientError) as refused:
            ci.cancel_job(job.job_id)
        assert refused.value.reason == "READ_ONLY"


def test_member_token_submits_on_the_public_port(gateway: GatewayHandle) -> None:
    with gateway.client(gateway.pki.admin()) as admin:
        token = admin.issue_token("panda-lm", "ci-bot").token
    with gateway.token_client(token) as ci:
        job = ci.create_job(EVAL)
        assert ci.get_job(job.job_id).state == JobState.QUEUED
    kinds = [e.kind for e in gateway.running.core.store.audit_entries()]
    assert "token.issued" in kinds


def test_joint_project_members_from_two_tenants_share_its_jobs(gateway: GatewayHandle) -> None:
    joint = JobSpec(
        tenant="deepsea-ai",
        project="open-moe",
        resources=Resources("ascend-910b", None, 8),
        runs=(StackRun("cann", "", ("true",)),),
    )
    with (
        gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice,
        gateway.client(gateway.pki.user("panda-lm", "bob")) as bob,
        gateway.client(gateway.pki.user("panda-lm", "carol")) as carol,
    ):
        job = alice.create_job(joint)
        assert [j.job_id for j in bob.list_jobs()] == [job.job_id]  # bob is in the joint project
        assert bob.get_job(job.job_id).spec.project == "open-moe"
        theirs = bob.create_job(JobSpec(**{**joint.__dict__, "tenant": "panda-lm"}))
        assert {j.job_id for j in alice.list_jobs()} == {job.job_id, theirs.job_id}
        with pytest.raises(ClientError) as hidden:
            carol.get_job(job.job_id)  # carol of panda-lm is not in the joint project
        assert hidden.value.code == "NOT_FOUND"
        assert bob.cancel_job(job.job_id).state == JobState.CANCELLED
