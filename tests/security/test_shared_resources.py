"""Shared resources, tried as a tenant that wants them all: one tenant's follow-mode log readers must not take a
site's log streams from every other tenant, and one tenant's watches must not take the gateway's. Each share is
refused with RESOURCE_EXHAUSTED naming the limit, and the other tenant is still served."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from fedgate.v1 import job_pb2, site_pb2
from gateway.jobs.events import SHARE_WATCHES
from gateway.sites.logs import SITE_STREAMS, TENANT_SITE_STREAMS
from gateway.transport.client import FederationClient
from tests.integration.harness import GatewayHandle
from tests.security.support import ALICE, BOB, SiteStream, assert_refused, job_update, spec_for
from tests.waiting import eventually

SITE = "centre-b"


def running_job(stream: SiteStream, client: FederationClient, tenant: str, project: str, sequence: int) -> str:
    """A job of `client`'s tenant, launched at the hand-driven site and reported RUNNING there."""
    job = client.create_job(spec_for(tenant, project))
    launch = stream.next_of("launch").launch
    assert launch.job_id == job.job_id
    stream.send(job_update=job_update(job.job_id, launch.epoch, job_pb2.JOB_STATE_RUNNING, sequence))
    stream.next_of("ack")
    return job.job_id


def follow(client: FederationClient, job_id: str, opened: threading.Event) -> Iterator[bytes]:
    for piece in client.stream_job_logs(job_id, follow=True, timeout=20):
        opened.set()
        yield piece.data


def test_one_tenant_cannot_take_a_sites_log_streams_from_the_others(gateway: GatewayHandle) -> None:
    assert TENANT_SITE_STREAMS < SITE_STREAMS
    stream = SiteStream(gateway, gateway.pki.site(SITE))
    stream.hello(SITE)
    stream.report()
    alice = gateway.client(gateway.pki.user(*ALICE))
    bob = gateway.client(gateway.pki.user(*BOB))
    try:
        alice_job = running_job(stream, alice, "deepsea-ai", "llama-sft", 1)
        bob_job = running_job(stream, bob, "panda-lm", "eval", 2)
        with ThreadPoolExecutor(TENANT_SITE_STREAMS + 1) as readers:
            # Alice opens her whole share of follow-mode readers (the site hears each) ...
            held = []
            for _ in range(TENANT_SITE_STREAMS):
                held.append(readers.submit(lambda: b"".join(follow(alice, alice_job, threading.Event()))))
                request = stream.next_of("log_request").log_request
                assert request.job_id == alice_job and request.follow
            # ... and every further one is refused, naming her share, whatever she tries.
            for _ in range(SITE_STREAMS):
                error = assert_refused(
                    lambda: list(alice.stream_job_logs(alice_job, follow=True, timeout=5)),
                    "RESOURCE_EXHAUSTED",
                    "TOO_MANY_LOG_STREAMS",
                )
                assert error.metadata.get("limit") == "tenant_site_streams", error.metadata
            # Bob, another tenant, still gets a stream at that site and reads his output.
            read = readers.submit(lambda: b"".join(p.data for p in bob.stream_job_logs(bob_job, timeout=20)))
            request = stream.next_of("log_request").log_request
            assert request.job_id == bob_job
            stream.send(log_chunk=site_pb2.LogChunk(stream_id=request.stream_id, data=b"bob's line\n", end=True))
            assert read.result(20) == b"bob's line\n"
            stream.close()  # ends Alice's readers (the site went away)
            for reader in held:
                assert_refused(reader.result, "UNAVAILABLE", "SITE_DISCONNECTED")
    finally:
        stream.close()
        alice.close()
        bob.close()


def test_one_tenant_cannot_hold_every_watch(gateway: GatewayHandle) -> None:
    alice = gateway.client(gateway.pki.user(*ALICE))
    bob = gateway.client(gateway.pki.user(*BOB))
    try:
        alice_job = alice.create_job(spec_for("deepsea-ai", "llama-sft")).job_id
        bob_job = bob.create_job(spec_for("panda-lm", "eval")).job_id
        watches = [alice.watch_job(alice_job, timeout=20) for _ in range(SHARE_WATCHES)]
        for watch in watches:
            next(watch)  # each watch is open: it has sent the job's current state
        error = assert_refused(
            lambda: next(alice.watch_job(alice_job, timeout=5)), "RESOURCE_EXHAUSTED", "TOO_MANY_WATCHES"
        )
        assert error.metadata.get("limit") == "share_watches"
        event, _job = next(bob.watch_job(bob_job, timeout=5))  # another tenant is still served
        assert event.job_id == bob_job
        for watch in watches:
            watch.close()  # type: ignore[attr-defined]
        eventually(lambda: next(alice.watch_job(alice_job, timeout=5)), timeout=10, what="a freed share of watches")
    finally:
        alice.close()
        bob.close()
