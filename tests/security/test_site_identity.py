"""A site speaks only for itself: its certificate names the site, and every capacity report and job update on
its stream is checked against that name and against the lease the job holds now."""

from __future__ import annotations

import grpc
import pytest

from fedgate.v1 import job_pb2, site_pb2
from gateway.jobs.model import JobState
from gateway.transport.client import FederationClient
from tests.integration.harness import GatewayHandle
from tests.security.support import (
    ALICE,
    SiteStream,
    assert_audit_intact,
    audited,
    job_update,
    spec_for,
    store_state,
)
from tests.waiting import eventually


def alice_client(gateway: GatewayHandle) -> FederationClient:
    return gateway.client(gateway.pki.user(*ALICE))


def pools_of(admin: FederationClient, site: str) -> list[tuple[str, int]]:
    return [(p.accelerator_class, p.total) for s in admin.list_sites() if s.name == site for p in s.pools]


def test_site_cannot_report_capacity_for_another_site(gateway: GatewayHandle, admin: FederationClient) -> None:
    owner = SiteStream(gateway, gateway.pki.site("centre-b"))
    intruder = SiteStream(gateway, gateway.pki.site("centre-a"))
    try:
        assert owner.hello("centre-b").HasField("welcome")
        owner.report(total=8)
        eventually(lambda: pools_of(admin, "centre-b") == [("ascend-910b", 8)], timeout=5, what="centre-b's report")
        # The only way to say "I am centre-b" on a stream is Hello; centre-a's certificate may not say it.
        intruder.send(hello=site_pb2.Hello(site="centre-b", agent_version="evil"))
        intruder.report(total=512)
        with pytest.raises(grpc.RpcError) as refused:
            intruder.next()
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        owner.close()
        intruder.close()
    assert pools_of(admin, "centre-b") == [("ascend-910b", 8)]  # centre-b's capacity is as centre-b said
    assert "centre-a" not in {s.name for s in admin.list_sites()}
    denied = audited(gateway, "call.denied", method="Connect", reason="SITE_MISMATCH")
    assert denied and denied[0].principal.endswith("/site/centre-a")
    assert_audit_intact(gateway)


def test_site_cannot_update_a_job_leased_to_another_site(gateway: GatewayHandle) -> None:
    owner = SiteStream(gateway, gateway.pki.site("centre-b"))
    intruder = SiteStream(gateway, gateway.pki.site("centre-a"))
    try:
        assert owner.hello("centre-b").HasField("welcome")
        owner.report()
        with alice_client(gateway) as alice:
            job = alice.create_job(spec_for())
            launch = owner.next_of("launch").launch
            assert launch.job_id == job.job_id
            assert intruder.hello("centre-a").HasField("welcome")
            before = store_state(gateway)
            intruder.send(job_update=job_update(job.job_id, launch.epoch, job_pb2.JOB_STATE_SUCCEEDED, 1))
            reply = intruder.next_of("rejection").rejection
            assert (reply.reason, reply.update_sequence) == ("JOB_NOT_LEASED_TO_SITE", 1)
            assert store_state(gateway) == before
            assert alice.get_job(job.job_id).state == JobState.DISPATCHED
    finally:
        owner.close()
        intruder.close()
    refused = audited(gateway, "site.update_refused", job_id=job.job_id, reason="JOB_NOT_LEASED_TO_SITE")
    assert refused and refused[0].principal.endswith("/site/centre-a")
    assert_audit_intact(gateway)


def test_site_cannot_update_a_job_not_leased_to_it(gateway: GatewayHandle) -> None:
    site = SiteStream(gateway, gateway.pki.site("centre-a"))
    try:
        assert site.hello("centre-a").HasField("welcome")  # no capacity: the job stays queued, leased to nobody
        with alice_client(gateway) as alice:
            job = alice.create_job(spec_for())
            before = store_state(gateway)
            site.send(job_update=job_update(job.job_id, 1, job_pb2.JOB_STATE_RUNNING, 1))
            site.send(job_update=job_update("j-does-not-exist", 1, job_pb2.JOB_STATE_FAILED, 2))
            first, second = site.next_of("rejection").rejection, site.next_of("rejection").rejection
            assert (first.update_sequence, first.reason) == (1, "JOB_NOT_LEASED_TO_SITE")
            assert (second.update_sequence, second.reason) == (2, "JOB_NOT_LEASED_TO_SITE")
            assert store_state(gateway) == before
            assert alice.get_job(job.job_id).state == JobState.QUEUED
    finally:
        site.close()
    assert len(audited(gateway, "site.update_refused", reason="JOB_NOT_LEASED_TO_SITE")) == 2
    assert_audit_intact(gateway)


def test_update_with_a_stale_epoch_is_refused(gateway: GatewayHandle) -> None:
    site = SiteStream(gateway, gateway.pki.site("centre-b"))
    try:
        assert site.hello("centre-b").HasField("welcome")
        site.report()
        with alice_client(gateway) as alice:
            job = alice.create_job(spec_for())
            first = site.next_of("launch").launch
            # The site hands the lease back; the job is placed again under a new epoch.
            returned = job_update(job.job_id, first.epoch, job_pb2.JOB_STATE_FAILED, 1, lease_returned=True)
            site.send(job_update=returned)
            second = site.next_of("launch").launch
            assert second.job_id == job.job_id and second.epoch > first.epoch
            before = store_state(gateway)
            # A late word about the first attempt must not touch the second.
            site.send(job_update=job_update(job.job_id, first.epoch, job_pb2.JOB_STATE_SUCCEEDED, 2))
            reply = site.next_of("rejection").rejection
            assert (reply.update_sequence, reply.reason) == (2, "STALE_EPOCH")
            assert store_state(gateway) == before
            assert alice.get_job(job.job_id).state == JobState.DISPATCHED
    finally:
        site.close()
    assert audited(gateway, "site.update_refused", job_id=job.job_id, reason="STALE_EPOCH")
    assert_audit_intact(gateway)
