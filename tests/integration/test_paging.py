"""Every List RPC pages the same way over a real gateway (AIP-158): a page at a time in the stated order, the
pages together are the whole listing, a row added while a caller pages comes once, and a token is the
caller's own: garbage, another caller's, another listing's or an expired one is INVALID_ARGUMENT
(BAD_PAGE_TOKEN), never page one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest

from fedgate.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    job_service_pb2,
    job_service_pb2_grpc,
    reservation_service_pb2,
    reservation_service_pb2_grpc,
)
from gateway.transport.client import FederationClient
from gateway.trust.pagetokens import TOKEN_LIFETIME
from tests.integration.harness import AgentHandle, GatewayHandle, start_test_agent, wait_for_capacity
from tests.security.support import ALICE, BOB, CALL_TIMEOUT_S, assert_refused, creds_channel, spec_for
from tests.waiting import eventually

POOL = [{"class": "ascend-910b", "cards": 8, "offered": 4, "cards_per_node": 8}]
CI_BOT = ("panda-lm", "ci-bot")  # a member of panda-lm's `eval` only
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


def listing(channel: grpc.Channel) -> dict[str, tuple[Callable[..., Any], Callable[..., Any], str]]:
    """Each List RPC: (its call, its request, the repeated field of its response)."""
    jobs = job_service_pb2_grpc.JobServiceStub(channel)
    reservations = reservation_service_pb2_grpc.ReservationServiceStub(channel)
    admin = admin_service_pb2_grpc.AdminServiceStub(channel)

    def since_the_epoch(make: Callable[..., Any]) -> Callable[..., Any]:
        def request(**fields: Any) -> Any:
            message = make(**fields)
            message.start_time.FromSeconds(0)
            return message

        return request

    return {
        "ListJobs": (jobs.ListJobs, job_service_pb2.ListJobsRequest, "jobs"),
        "ListSites": (jobs.ListSites, job_service_pb2.ListSitesRequest, "sites"),
        "GetUsage": (jobs.GetUsage, since_the_epoch(job_service_pb2.GetUsageRequest), "rows"),
        "ListUsageReceipts": (
            jobs.ListUsageReceipts,
            since_the_epoch(job_service_pb2.ListUsageReceiptsRequest),
            "receipts",
        ),
        "ListReservations": (
            reservations.ListReservations,
            reservation_service_pb2.ListReservationsRequest,
            "reservations",
        ),
        "ListAuditEvents": (admin.ListAuditEvents, admin_service_pb2.ListAuditEventsRequest, "events"),
    }


def page(channel: grpc.Channel, rpc: str, token: str = "", size: int = 1) -> Any:
    call, request, _ = listing(channel)[rpc]
    return call(request(page_size=size, page_token=token), timeout=CALL_TIMEOUT_S)


def every_page(channel: grpc.Channel, rpc: str, size: int = 1) -> tuple[list[Any], int]:
    """Every item of a listing followed page by page, and how many pages it took."""
    field = listing(channel)[rpc][2]
    items: list[Any] = []
    token, pages = "", 0
    while True:
        reply = page(channel, rpc, token, size)
        items += list(getattr(reply, field))
        pages += 1
        token = reply.next_page_token
        if not token:
            return items, pages
        assert pages < 500, "a listing that never ends"


def has_ended(client: FederationClient, job_id: str) -> bool:
    return client.get_job(job_id).state.terminal


@pytest.fixture
def sites(gateway: GatewayHandle, tmp_path: Path) -> Iterator[list[AgentHandle]]:
    agents = [start_test_agent(gateway, name, POOL, tmp_path / name) for name in ("centre-b", "centre-a")]
    for name in ("centre-a", "centre-b"):
        wait_for_capacity(gateway, name)
    yield agents
    for agent in agents:
        agent.stop()


def test_every_list_pages_one_at_a_time_in_its_stated_order_to_the_whole_listing(
    gateway: GatewayHandle, sites: list[AgentHandle]
) -> None:
    with gateway.client(gateway.pki.user(*ALICE)) as alice, gateway.client(gateway.pki.user(*BOB)) as bob:
        ended = [alice.create_job(spec_for()) for _ in range(2)] + [bob.create_job(spec_for("panda-lm", "inference"))]
        for job, owner in zip(ended, (alice, alice, bob), strict=True):
            eventually(partial(has_ended, owner, job.job_id), timeout=30, what="the job to end")
        eventually(lambda: len(bob.list_usage_receipts(BEGINNING)) == 1, timeout=30, what="bob's receipt")
        eventually(lambda: len(alice.list_usage_receipts(BEGINNING)) == 2, timeout=30, what="alice's receipts")
    with gateway.client(gateway.pki.admin()) as admin:
        for name in ("centre-c", "centre-d"):
            admin.create_join_token(name)  # each one audited
        audited = [e.sequence for e in admin.audit_events()]
    with creds_channel(gateway, gateway.pki.admin()) as channel:
        jobs, pages = every_page(channel, "ListJobs")
        assert [j.job_id for j in jobs] == sorted(j.job_id for j in ended) and pages >= 3
        found, pages = every_page(channel, "ListSites")
        assert [s.name for s in found] == ["centre-a", "centre-b"] and pages == 2
        rows, _ = every_page(channel, "GetUsage")
        keys = [(r.tenant, r.project, r.accelerator_class) for r in rows]
        assert keys == sorted(keys) and {k[0] for k in keys} == {"deepsea-ai", "panda-lm"} and len(rows) >= 2
        receipts, _ = every_page(channel, "ListUsageReceipts")
        assert sorted(r.gateway_signature for r in receipts) == sorted(
            r.gateway_signature for r in every_page(channel, "ListUsageReceipts", 500)[0]
        )
        assert len(receipts) == 3
        events, pages = every_page(channel, "ListAuditEvents")
        assert [e.sequence for e in events][: len(audited)] == audited and len(audited) >= 3
        assert pages >= len(audited)


def test_a_token_never_widens_what_a_scoped_caller_sees(gateway: GatewayHandle) -> None:
    with gateway.client(gateway.pki.user(*BOB)) as bob, gateway.client(gateway.pki.user(*CI_BOT)) as ci:
        hidden = [bob.create_job(spec_for("panda-lm", "inference")) for _ in range(3)]
        own = ci.create_job(spec_for("panda-lm", "eval"))
        hidden.append(bob.create_job(spec_for("panda-lm", "inference")))
    with creds_channel(gateway, gateway.pki.user(*CI_BOT)) as channel:
        seen, pages = every_page(channel, "ListJobs")
        assert [j.job_id for j in seen] == [own.job_id]
        assert pages >= 2, "the store's pages held the hidden jobs: the listing went on past them"
    with creds_channel(gateway, gateway.pki.user(*BOB)) as channel:
        bobs = [j.job_id for j in every_page(channel, "ListJobs")[0]]
        assert set(bobs) >= {j.job_id for j in hidden}, "bob's own listing still holds his jobs"


def test_jobs_created_while_a_caller_pages_come_once_at_the_end(gateway: GatewayHandle) -> None:
    with gateway.client(gateway.pki.user(*ALICE)) as alice:
        before = [alice.create_job(spec_for()).job_id for _ in range(3)]
        with creds_channel(gateway, gateway.pki.user(*ALICE)) as channel:
            first = page(channel, "ListJobs", size=2)
            after = [alice.create_job(spec_for()).job_id for _ in range(2)]
            seen = [j.job_id for j in first.jobs]
            token = first.next_page_token
            while token:
                reply = page(channel, "ListJobs", token, 2)
                seen += [j.job_id for j in reply.jobs]
                token = reply.next_page_token
    assert seen == before + after  # job ids sort by creation: no job twice, none skipped, the new ones last
    assert len(set(seen)) == len(seen)


def test_every_list_refuses_garbage_foreign_and_expired_tokens(gateway: GatewayHandle) -> None:
    with gateway.client(gateway.pki.user(*ALICE)) as alice:
        for _ in range(2):
            alice.create_job(spec_for())
    with creds_channel(gateway, gateway.pki.user(*ALICE)) as channel:
        alices = page(channel, "ListJobs").next_page_token
        assert alices
        for rpc in ("ListJobs", "ListSites", "GetUsage", "ListUsageReceipts", "ListReservations"):
            for token in ("garbage", "1", alices[:-2] + ("AA" if not alices.endswith("AA") else "BB"), "x" * 5000):
                assert_refused(partial(page, channel, rpc, token), "INVALID_ARGUMENT", "BAD_PAGE_TOKEN")
            if rpc != "ListJobs":  # a job listing's token is no page of another listing
                assert_refused(partial(page, channel, rpc, alices), "INVALID_ARGUMENT", "BAD_PAGE_TOKEN")
    with creds_channel(gateway, gateway.pki.user(*BOB)) as channel:  # alice's token is hers alone
        assert_refused(partial(page, channel, "ListJobs", alices), "INVALID_ARGUMENT", "BAD_PAGE_TOKEN")
    with creds_channel(gateway, gateway.pki.admin()) as channel:
        for token in ("1", "garbage", alices):
            assert_refused(partial(page, channel, "ListAuditEvents", token), "INVALID_ARGUMENT", "BAD_PAGE_TOKEN")
    # A day later the same token is refused as expired: the gateway's own token clock moved on.
    tokens = gateway.running.core.jobs.tokens
    sealed_clock = tokens._clock
    tokens._clock = lambda: sealed_clock() + TOKEN_LIFETIME + 60
    try:
        with creds_channel(gateway, gateway.pki.user(*ALICE)) as channel:
            refused = assert_refused(partial(page, channel, "ListJobs", alices), "INVALID_ARGUMENT", "BAD_PAGE_TOKEN")
    finally:
        tokens._clock = sealed_clock
    assert "expired" in str(refused)


def test_page_size_is_held_to_its_limits(gateway: GatewayHandle) -> None:
    with gateway.client(gateway.pki.user(*ALICE)) as alice:
        created = [alice.create_job(spec_for()).job_id for _ in range(3)]
    with creds_channel(gateway, gateway.pki.user(*ALICE)) as channel:
        assert [j.job_id for j in page(channel, "ListJobs", size=0).jobs] == created  # 0: the default (100)
        assert [j.job_id for j in page(channel, "ListJobs", size=10_000).jobs] == created  # capped, not refused
        for rpc in ("ListJobs", "ListSites", "GetUsage", "ListUsageReceipts", "ListReservations"):
            assert_refused(partial(page, channel, rpc, "", -1), "INVALID_ARGUMENT")
