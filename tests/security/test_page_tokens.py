"""Page tokens carry nothing the caller could not read, and only the gateway makes them.

The store pages by id before the gateway drops what the caller may not see, so its own token can be the id of a
job in a project the caller may not see. An attacker reads its token, decodes it, forges one, borrows another
caller's: none of it works, and a token that is not the gateway's is INVALID_ARGUMENT, never page one."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from functools import partial

import grpc
import pytest

from fedgate.v1 import job_service_pb2, job_service_pb2_grpc, reservation_service_pb2, reservation_service_pb2_grpc
from gateway.jobs.model import Job
from tests.integration.harness import GatewayHandle
from tests.security.support import BOB, CALL_TIMEOUT_S, assert_refused, creds_channel, spec_for

CI_BOT = ("panda-lm", "ci-bot")  # a member of panda-lm's `eval` only


@pytest.fixture
def jobs(gateway: GatewayHandle) -> Iterator[tuple[list[Job], Job]]:
    """Two jobs of bob in `inference` (which ci-bot may not see) made before one of ci-bot in `eval`."""
    with gateway.client(gateway.pki.user(*BOB)) as bob, gateway.client(gateway.pki.user(*CI_BOT)) as ci:
        hidden = [bob.create_job(spec_for("panda-lm", "inference")) for _ in range(2)]
        yield hidden, ci.create_job(spec_for("panda-lm", "eval"))


def list_jobs(channel: grpc.Channel, token: str = "", size: int = 1) -> job_service_pb2.ListJobsResponse:
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    request = job_service_pb2.ListJobsRequest(page_size=size, page_token=token)
    reply: job_service_pb2.ListJobsResponse = stub.ListJobs(request, timeout=CALL_TIMEOUT_S)
    return reply


def test_a_page_token_names_no_job_the_caller_may_not_see_and_leads_only_to_its_own_jobs(
    gateway: GatewayHandle, jobs: tuple[list[Job], Job]
) -> None:
    hidden, own = jobs
    with creds_channel(gateway, gateway.pki.user(*CI_BOT)) as channel:
        seen: list[str] = []
        tokens: list[str] = []
        page = list_jobs(channel)
        while True:
            seen += [j.job_id for j in page.jobs]
            if not page.next_page_token:
                break
            tokens.append(page.next_page_token)
            page = list_jobs(channel, page.next_page_token)
    assert seen == [own.job_id]
    assert tokens, "the store's first page held only a hidden job: there must have been a next page"
    for token in tokens:
        decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        for job in hidden:
            assert job.job_id not in token and job.job_id.encode() not in decoded


def test_a_forged_garbage_or_borrowed_page_token_is_invalid_argument(
    gateway: GatewayHandle, jobs: tuple[list[Job], Job]
) -> None:
    hidden, _own = jobs
    with creds_channel(gateway, gateway.pki.user(*BOB)) as channel:
        bobs_token = list_jobs(channel).next_page_token
        assert bobs_token
    with creds_channel(gateway, gateway.pki.user(*CI_BOT)) as channel:
        forged = [
            "garbage",
            hidden[0].job_id,  # the store's own form of a token
            base64.urlsafe_b64encode(hidden[0].job_id.encode()).decode(),
            bobs_token,  # another caller's token, however valid for him
            bobs_token[:-2] + ("AA" if not bobs_token.endswith("AA") else "BB"),
            "x" * 5000,
        ]
        for token in forged:
            assert_refused(partial(list_jobs, channel, token), "INVALID_ARGUMENT", "BAD_PAGE_TOKEN")
        reservations = reservation_service_pb2_grpc.ReservationServiceStub(channel)
        request = reservation_service_pb2.ListReservationsRequest(page_token="garbage")
        assert_refused(
            lambda: reservations.ListReservations(request, timeout=CALL_TIMEOUT_S), "INVALID_ARGUMENT", "BAD_PAGE_TOKEN"
        )
        receipts = job_service_pb2.ListUsageReceiptsRequest(page_token="1")  # the old form: a row number
        receipts.start_time.FromSeconds(0)
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        assert_refused(
            lambda: stub.ListUsageReceipts(receipts, timeout=CALL_TIMEOUT_S), "INVALID_ARGUMENT", "BAD_PAGE_TOKEN"
        )
