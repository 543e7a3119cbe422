"""A tenant sees and touches only its own jobs. Another tenant's job is answered exactly like a job that does
not exist (NOT_FOUND), so that its existence leaks nothing, and nothing about it changes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.jobs.model import Job, JobState
from gateway.transport.client import FederationClient
from tests.integration.harness import GatewayHandle
from tests.security.support import ALICE, BOB, assert_refused, spec_for, store_state


@pytest.fixture
def alices_job(gateway: GatewayHandle) -> Iterator[Job]:
    with gateway.client(gateway.pki.user(*ALICE)) as alice:
        yield alice.create_job(spec_for())


@pytest.fixture
def bob(gateway: GatewayHandle) -> Iterator[FederationClient]:
    with gateway.client(gateway.pki.user(*BOB)) as client:
        yield client


def assert_untouched(gateway: GatewayHandle, job: Job) -> None:
    with gateway.client(gateway.pki.user(*ALICE)) as alice:
        assert alice.get_job(job.job_id).state == JobState.QUEUED


def test_tenant_cannot_read_another_tenants_job(gateway: GatewayHandle, alices_job: Job, bob: FederationClient) -> None:
    before = store_state(gateway)
    assert_refused(lambda: bob.get_job(alices_job.job_id), "NOT_FOUND", "JOB_NOT_FOUND")
    assert_refused(lambda: bob.explain_job(alices_job.job_id), "NOT_FOUND", "JOB_NOT_FOUND")
    assert_refused(lambda: bob.list_jobs(tenant="deepsea-ai"), "PERMISSION_DENIED", "TENANT_MISMATCH")
    assert bob.list_jobs() == []
    # Indistinguishable from a job id that was never issued.
    missing = assert_refused(lambda: bob.get_job("j-does-not-exist"), "NOT_FOUND", "JOB_NOT_FOUND")
    probe = assert_refused(lambda: bob.get_job(alices_job.job_id), "NOT_FOUND")
    assert probe.message.replace(alices_job.job_id, "ID") == missing.message.replace("j-does-not-exist", "ID")
    assert store_state(gateway) == before


def test_tenant_cannot_cancel_another_tenants_job(
    gateway: GatewayHandle, alices_job: Job, bob: FederationClient
) -> None:
    before = store_state(gateway)
    assert_refused(lambda: bob.cancel_job(alices_job.job_id, "sabotage"), "NOT_FOUND", "JOB_NOT_FOUND")
    assert store_state(gateway) == before
    assert_untouched(gateway, alices_job)


def test_tenant_cannot_watch_another_tenants_job(
    gateway: GatewayHandle, alices_job: Job, bob: FederationClient
) -> None:
    before = store_state(gateway)
    assert_refused(lambda: bob.watch_job(alices_job.job_id, timeout=5), "NOT_FOUND", "JOB_NOT_FOUND")
    assert store_state(gateway) == before
    assert_untouched(gateway, alices_job)


def test_tenant_token_cannot_read_cancel_or_watch_another_tenants_job(
    gateway: GatewayHandle, alices_job: Job, admin: FederationClient
) -> None:
    # The same wall on the public port: a CI token of tenant B is tenant B.
    token = admin.issue_token("panda-lm", "ci-bot").token
    before = store_state(gateway)
    with gateway.token_client(token) as ci:
        assert_refused(lambda: ci.get_job(alices_job.job_id), "NOT_FOUND", "JOB_NOT_FOUND")
        assert_refused(lambda: ci.cancel_job(alices_job.job_id), "NOT_FOUND", "JOB_NOT_FOUND")
        assert_refused(lambda: ci.watch_job(alices_job.job_id, timeout=5), "NOT_FOUND", "JOB_NOT_FOUND")
    assert store_state(gateway) == before
    assert_untouched(gateway, alices_job)
