"""Who may call at all, and who may see what: each refusal against a real gateway with real mTLS."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from datetime import UTC, datetime

import grpc
import pytest

from fedgate.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc, site_pb2, site_pb2_grpc
from gateway.errors import ClientError
from gateway.jobs.model import JobSpec, JobState, Resources, StackRun
from gateway.trust.credentials import Credentials
from tests.integration.harness import GatewayHandle

SPEC = JobSpec(
    tenant="deepsea-ai",
    project="llama-sft",
    resources=Resources("ascend-910b", None, 1),
    runs=(StackRun("cann", "", ("python3", "-c", "print('hi')")),),
)


def raw_channel(gateway: GatewayHandle, ca: bytes, cert: bytes | None = None, key: bytes | None = None) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    return grpc.secure_channel(gateway.address, creds)


def test_client_without_certificate_is_refused(gateway: GatewayHandle) -> None:
    ca = (gateway.pki.root / "ca" / "ca.pem").read_bytes()
    with raw_channel(gateway, ca) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListJobs(job_service_pb2.ListJobsRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake itself fails
    assert gateway.running.core.store.list_jobs(None).jobs == ()


def test_client_with_certificate_from_another_ca_is_refused(gateway: GatewayHandle) -> None:
    from gateway.identity.principal import Principal

    foreign = gateway.pki.foreign.issue(
        Principal.user("itest", "deepsea-ai", "mallory"), gateway.pki.root / "foreign-user"
    )
    creds = Credentials.from_dir(foreign)
    ca = (gateway.pki.root / "ca" / "ca.pem").read_bytes()
    with raw_channel(gateway, ca, creds.cert_pem, creds.key_pem) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.CreateJob(job_service_pb2.CreateJobRequest(spec=job_pb2.JobSpec(tenant="deepsea-ai")), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert gateway.running.core.store.list_jobs(None).jobs == ()


def test_tenant_cannot_read_cancel_watch_or_list_another_tenants_job(gateway: GatewayHandle) -> None:
    with (
        gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice,
        gateway.client(gateway.pki.user("panda-lm", "bob")) as bob,
    ):
        job = alice.create_job(SPEC)
        for attempt in (
            lambda: bob.get_job(job.job_id),
            lambda: bob.cancel_job(job.job_id),
            lambda: list(bob.watch_job(job.job_id, timeout=5)),
            lambda: bob.explain_job(job.job_id),
        ):
            with pytest.raises(ClientError) as refused:
                attempt()
            assert refused.value.code == "NOT_FOUND"  # indistinguishable from a job that does not exist
        with pytest.raises(ClientError) as refused:
            bob.list_jobs(tenant="deepsea-ai")
        assert refused.value.code == "PERMISSION_DENIED"
        assert [j.job_id for j in bob.list_jobs()] == []
        assert alice.get_job(job.job_id).state == JobState.QUEUED  # untouched
        assert [j.job_id for j in alice.list_jobs()] == [job.job_id]


def test_tenant_cannot_submit_for_another_tenant(gateway: GatewayHandle) -> None:
    with gateway.client(gateway.pki.user("panda-lm", "bob")) as bob, pytest.raises(ClientError) as refused:
        bob.create_job(SPEC)
    assert refused.value.code == "PERMISSION_DENIED" and refused.value.reason == "TENANT_MISMATCH"
    assert gateway.running.core.store.list_jobs(None).jobs == ()


def test_site_certificate_cannot_use_the_vendor_api(gateway: GatewayHandle) -> None:
    with gateway.client(gateway.pki.site("centre-a")) as site, pytest.raises(ClientError) as refused:
        site.list_jobs()
    assert refused.value.code == "PERMISSION_DENIED"


def test_admin_api_needs_an_admin(gateway: GatewayHandle) -> None:
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice, pytest.raises(ClientError) as refused:
        alice.drain_site("centre-a")
    assert refused.value.code == "PERMISSION_DENIED"
    with gateway.client(gateway.pki.admin()) as admin:
        assert admin.policy_status().tenants == 2


class SiteStream:
    """A hand-driven agent stream, to say things a real agent never would."""

    def __init__(self, gateway: GatewayHandle, creds_dir: object) -> None:
        creds = Credentials.from_dir(creds_dir)  # type: ignore[arg-type]
        self.channel = raw_channel(gateway, creds.ca_pem, creds.cert_pem, creds.key_pem)
        self.outgoing: queue.Queue[site_pb2.ConnectRequest | None] = queue.Queue()
        self.responses: Iterator[site_pb2.ConnectResponse] = site_pb2_grpc.SiteServiceStub(self.channel).Connect(
            self._requests(), timeout=10
        )

    def _requests(self) -> Iterator[site_pb2.ConnectRequest]:
        while (item := self.outgoing.get()) is not None:
            yield item

    def send(self, **kind: object) -> None:
        self.outgoing.put(site_pb2.ConnectRequest(**kind))  # type: ignore[arg-type]

    def next(self) -> site_pb2.ConnectResponse:
        return next(self.responses)

    def close(self) -> None:
        self.outgoing.put(None)
        self.channel.close()


def test_site_cannot_say_hello_as_another_site(gateway: GatewayHandle) -> None:
    stream = SiteStream(gateway, gateway.pki.site("centre-a"))
    try:
        stream.send(hello=site_pb2.Hello(site="centre-b", agent_version="evil"))
        with pytest.raises(grpc.RpcError) as refused:
            stream.next()
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        stream.close()
    assert "centre-b" not in gateway.running.core.registry.names()


def test_site_cannot_update_a_job_leased_to_another_site(gateway: GatewayHandle) -> None:
    fed = gateway.running.core
    owner = SiteStream(gateway, gateway.pki.site("centre-b"))
    intruder = SiteStream(gateway, gateway.pki.site("centre-a"))
    try:
        owner.send(hello=site_pb2.Hello(site="centre-b", agent_version="t"))
        assert owner.next().HasField("welcome")
        pool = site_pb2.Pool(accelerator_class="ascend-910b", total=8, offered=8, free=8, cards_per_node=8)
        owner.send(capacity=site_pb2.CapacityReport(full=True, pools=[pool]))
        with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
            job = alice.create_job(SPEC)
            launch = owner.next()
            assert launch.launch.job_id == job.job_id
            intruder.send(hello=site_pb2.Hello(site="centre-a", agent_version="t"))
            assert intruder.next().HasField("welcome")
            update = site_pb2.JobUpdate(
                job_id=job.job_id, epoch=launch.launch.epoch, state=job_pb2.JOB_STATE_SUCCEEDED, sequence=1
            )
            update.time.FromDatetime(datetime.now(UTC))
            before = fed.store.events(job.job_id)
            intruder.send(job_update=update)
            reply = intruder.next()
            assert reply.rejection.reason == "JOB_NOT_LEASED_TO_SITE"
            assert reply.rejection.update_sequence == 1
            assert fed.store.events(job.job_id) == before  # nothing changed in the store
            assert alice.get_job(job.job_id).state == JobState.DISPATCHED
            # A stale epoch from the rightful site is refused the same way.
            stale = site_pb2.JobUpdate()
            stale.CopyFrom(update)
            stale.epoch = launch.launch.epoch - 1
            owner.send(job_update=stale)
            reply = owner.next()
            while not reply.HasField("rejection"):
                reply = owner.next()
            assert reply.rejection.reason == "STALE_EPOCH"
            assert fed.store.events(job.job_id) == before
    finally:
        owner.close()
        intruder.close()


def test_a_site_lying_about_its_capacity_is_refused_and_changes_nothing(gateway: GatewayHandle) -> None:
    stream = SiteStream(gateway, gateway.pki.site("centre-a"))
    registry = gateway.running.core.registry
    try:
        stream.send(hello=site_pb2.Hello(site="centre-a", agent_version="t"))
        assert stream.next().HasField("welcome")
        honest = site_pb2.Pool(accelerator_class="ascend-910b", total=8, offered=4, free=4, cards_per_node=8)
        stream.send(capacity=site_pb2.CapacityReport(full=True, pools=[honest]))
        for lie, reason in (
            (site_pb2.Pool(accelerator_class="ascend-910b", total=8, offered=4, free=64), "INCONSISTENT_CAPACITY"),
            (site_pb2.Pool(accelerator_class="ascend-910b", total=8, offered=16, free=8), "INCONSISTENT_CAPACITY"),
            (
                site_pb2.Pool(accelerator_class="warp-drive-9000", total=8, offered=8, free=8),
                "UNKNOWN_ACCELERATOR_CLASS",
            ),
        ):
            stream.send(capacity=site_pb2.CapacityReport(full=True, pools=[lie]))
            reply = stream.next()
            assert reply.rejection.reason == reason
        [pool] = registry.view("centre-a").pools  # the honest report still stands
        assert (pool.offered, pool.free) == (4, 4)
    finally:
        stream.close()
