"""Identity comes from what TLS verified, or from one verified bearer token on the public port, and from nothing
else a caller says: request metadata cannot smuggle an identity in. And each port serves only what its kind
of authentication can protect."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fedgate.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    job_service_pb2,
    job_service_pb2_grpc,
    site_pb2,
    site_pb2_grpc,
)
from gateway.jobs.model import Job
from gateway.transport import convert
from gateway.transport.client import FederationClient
from tests.integration.harness import FEDERATION, GatewayHandle
from tests.security.support import (
    ALICE,
    BOB,
    CALL_TIMEOUT_S,
    assert_refused,
    creds_channel,
    public_channel,
    spec_for,
    store_state,
)

ADMIN_URI = f"spiffe://{FEDERATION}/admin/root"


def smuggled(bearer: str) -> tuple[tuple[str, str], ...]:
    """Everything a proxy-trusting server might take for the caller's identity."""
    return (
        ("x-fedgate-principal", ADMIN_URI),
        ("x-spiffe-id", ADMIN_URI),
        ("x-forwarded-client-cert", f"By={ADMIN_URI};URI={ADMIN_URI}"),
        ("x-fedgate-tenant", "deepsea-ai"),
        ("authorization", f"Bearer {bearer}"),
    )


@pytest.fixture
def alices_job(gateway: GatewayHandle) -> Iterator[Job]:
    with gateway.client(gateway.pki.user(*ALICE)) as alice:
        yield alice.create_job(spec_for())


def test_identity_in_request_metadata_is_ignored_on_the_mtls_port(
    gateway: GatewayHandle, admin: FederationClient, alices_job: Job
) -> None:
    # Bob (tenant panda-lm) holds a valid token of alice's tenant and claims to be the admin in headers.
    token = admin.issue_token("deepsea-ai", "ci-bot").token
    metadata = smuggled(token)
    before = store_state(gateway)
    with creds_channel(gateway, gateway.pki.user(*BOB)) as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        get = job_service_pb2.GetJobRequest(job_id=alices_job.job_id)
        assert_refused(lambda: jobs.GetJob(get, metadata=metadata, timeout=CALL_TIMEOUT_S), "NOT_FOUND")
        cancel = job_service_pb2.CancelJobRequest(job_id=alices_job.job_id)
        assert_refused(lambda: jobs.CancelJob(cancel, metadata=metadata, timeout=CALL_TIMEOUT_S), "NOT_FOUND")
        create = job_service_pb2.CreateJobRequest(request_id="smuggled", spec=convert.spec_to_proto(spec_for()))
        assert_refused(
            lambda: jobs.CreateJob(create, metadata=metadata, timeout=CALL_TIMEOUT_S),
            "PERMISSION_DENIED",
            "TENANT_MISMATCH",
        )
        listed = jobs.ListJobs(job_service_pb2.ListJobsRequest(), metadata=metadata, timeout=CALL_TIMEOUT_S)
        assert list(listed.jobs) == []  # bob's own (empty) tenant, not alice's, not everyone's
        admin_stub = admin_service_pb2_grpc.AdminServiceStub(channel)
        status = admin_service_pb2.GetPolicyStatusRequest()
        assert_refused(
            lambda: admin_stub.GetPolicyStatus(status, metadata=metadata, timeout=CALL_TIMEOUT_S),
            "PERMISSION_DENIED",
            "WRONG_ROLE",
        )
    assert store_state(gateway) == before


def test_extra_metadata_next_to_a_token_changes_nothing_on_the_public_port(
    gateway: GatewayHandle, admin: FederationClient, alices_job: Job
) -> None:
    token = admin.issue_token("panda-lm", "ci-bot").token  # tenant B's CI
    metadata = (*smuggled(token)[:-1], ("authorization", f"Bearer {token}"))
    before = store_state(gateway)
    with public_channel(gateway) as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        get = job_service_pb2.GetJobRequest(job_id=alices_job.job_id)
        assert_refused(lambda: jobs.GetJob(get, metadata=metadata, timeout=CALL_TIMEOUT_S), "NOT_FOUND")
        other = job_service_pb2.ListJobsRequest(tenant="deepsea-ai")
        assert_refused(
            lambda: jobs.ListJobs(other, metadata=metadata, timeout=CALL_TIMEOUT_S),
            "PERMISSION_DENIED",
            "TENANT_MISMATCH",
        )
        listed = jobs.ListJobs(job_service_pb2.ListJobsRequest(), metadata=metadata, timeout=CALL_TIMEOUT_S)
        assert list(listed.jobs) == []
    assert store_state(gateway) == before


def test_two_authorization_headers_are_refused_on_the_public_port(
    gateway: GatewayHandle, admin: FederationClient
) -> None:
    # Which of two tokens would count is ambiguous; the gateway takes neither.
    mine = admin.issue_token("panda-lm", "ci-bot").token
    theirs = admin.issue_token("deepsea-ai", "ci-bot").token
    metadata = (("authorization", f"Bearer {mine}"), ("authorization", f"Bearer {theirs}"))
    with public_channel(gateway) as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        request = job_service_pb2.ListJobsRequest()
        assert_refused(
            lambda: jobs.ListJobs(request, metadata=metadata, timeout=CALL_TIMEOUT_S), "UNAUTHENTICATED", "NO_TOKEN"
        )


def test_public_port_serves_nothing_without_a_token(gateway: GatewayHandle) -> None:
    with public_channel(gateway) as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        for call, request in (
            (jobs.ListJobs, job_service_pb2.ListJobsRequest()),
            (jobs.ListSites, job_service_pb2.ListSitesRequest()),
            (jobs.CreateJob, job_service_pb2.CreateJobRequest(spec=convert.spec_to_proto(spec_for()))),
        ):
            assert_refused(lambda: call(request, timeout=CALL_TIMEOUT_S), "UNAUTHENTICATED", "NO_TOKEN")  # noqa: B023
    assert store_state(gateway).jobs == ()


def test_public_port_serves_only_enrolment_and_jobs(gateway: GatewayHandle, admin: FederationClient) -> None:
    # Even with a valid token: the admin and site services exist on the mTLS port only (health and reflection are
    # on both: tests/integration/test_discovery.py).
    metadata = (("authorization", f"Bearer {admin.issue_token('deepsea-ai', 'ci-bot').token}"),)
    with public_channel(gateway) as channel:
        admin_stub = admin_service_pb2_grpc.AdminServiceStub(channel)
        assert_refused(
            lambda: admin_stub.GetPolicyStatus(
                admin_service_pb2.GetPolicyStatusRequest(), metadata=metadata, timeout=CALL_TIMEOUT_S
            ),
            "UNIMPLEMENTED",
        )
        sites = site_pb2_grpc.SiteServiceStub(channel)
        hello = site_pb2.ConnectRequest(hello=site_pb2.Hello(site="centre-a"))
        assert_refused(lambda: sites.Connect(iter([hello]), metadata=metadata, timeout=CALL_TIMEOUT_S), "UNIMPLEMENTED")
