"""Request ids are keys the caller chooses, so they are never a way into someone else's objects (AIP-155).

An attacker who learns (or guesses) another principal's request id and sends it with a create call gets nothing
of the object made under it: a site certificate, another tenant's user and a viewer token on the public port are
refused before anything is looked up; a same-tenant user who may not see the project of the job made under the
id is refused like one who reuses an id for a different request; only a retry of the same request by someone
who may see the object gets the original back."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from gateway.jobs.model import Job, JobSpec, Resources
from gateway.reservations.model import Reservation, ReservationRequest
from gateway.transport.client import FederationClient
from tests.integration.harness import GatewayHandle, wait_for_capacity
from tests.security.support import ALICE, BOB, SiteStream, assert_refused, spec_for

SITE = "centre-a"


@pytest.fixture
def site(gateway: GatewayHandle) -> Iterator[None]:
    """A hand-driven site with 8 ascend-910b cards, so that reservations can be planned."""
    stream = SiteStream(gateway, gateway.pki.site(SITE))
    stream.hello(SITE)
    stream.report(total=8)
    wait_for_capacity(gateway, SITE)
    yield
    stream.close()


def booking(cards: int = 4, tenant: str = "") -> ReservationRequest:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    return ReservationRequest(
        tenant, "llama-sft", Resources("ascend-910b", None, cards), start, start + timedelta(hours=1)
    )


@pytest.fixture
def alices_booking(gateway: GatewayHandle, site: None) -> Iterator[tuple[Reservation, ReservationRequest]]:
    request = booking()
    with gateway.client(gateway.pki.user(*ALICE)) as alice:
        yield alice.create_reservation(request, "alice-book-1"), request


def test_no_one_else_gets_a_reservation_by_its_request_id(
    gateway: GatewayHandle, alices_booking: tuple[Reservation, ReservationRequest], admin: FederationClient
) -> None:
    reservation, request = alices_booking
    theirs = replace(request, tenant="deepsea-ai")
    with (
        gateway.client(gateway.pki.user(*BOB)) as bob,
        gateway.client(gateway.pki.site(SITE)) as site_cert,
        gateway.token_client(admin.issue_token("deepsea-ai", "eve", role="viewer").token) as viewer,
        gateway.token_client(admin.issue_token("panda-lm", "bob").token) as bobs_ci,
    ):
        attempts: list[tuple[str, FederationClient, str, str]] = [
            ("another tenant's user", bob, "PERMISSION_DENIED", "TENANT_MISMATCH"),
            ("a site certificate", site_cert, "PERMISSION_DENIED", "ROLE_CANNOT_SUBMIT"),
            ("a viewer token of the tenant", viewer, "PERMISSION_DENIED", "READ_ONLY"),
            ("another tenant's token", bobs_ci, "PERMISSION_DENIED", "TENANT_MISMATCH"),
        ]
        for who, client, code, reason in attempts:
            error = assert_refused(partial(client.create_reservation, theirs, "alice-book-1"), code, reason)
            assert reservation.reservation_id not in error.message, who
        # Under his own tenant the same id is simply his own, new key: alice's booking is not his.
        own = replace(request, project="eval")
        mine = bob.create_reservation(own, "alice-book-1")
        assert mine.reservation_id != reservation.reservation_id and mine.tenant == "panda-lm"
    with gateway.client(gateway.pki.user(*ALICE)) as alice:
        assert alice.get_reservation(reservation.reservation_id).request.resources.cards == 4


def test_a_reused_reservation_request_id_with_another_request_is_refused_and_a_retry_gets_the_original(
    gateway: GatewayHandle, alices_booking: tuple[Reservation, ReservationRequest]
) -> None:
    reservation, request = alices_booking
    with gateway.client(gateway.pki.user(*ALICE)) as alice:
        again = alice.create_reservation(request, "alice-book-1")
        assert again.reservation_id == reservation.reservation_id
        bigger = replace(request, resources=replace(request.resources, cards=8))
        error = assert_refused(
            lambda: alice.create_reservation(bigger, "alice-book-1"), "ALREADY_EXISTS", "REQUEST_ID_REUSED"
        )
        assert reservation.reservation_id not in error.message and "new request id" in error.message
        assert len(alice.list_reservations()) == 1


@pytest.fixture
def bobs_secret_job(gateway: GatewayHandle) -> Iterator[tuple[Job, JobSpec]]:
    """bob (every panda-lm project) submits to `inference`, which ci-bot (only `eval`) may not see."""
    spec = replace(spec_for("panda-lm", "inference"), env=(("HF_TOKEN", "hf_secret_of_inference"),))
    with gateway.client(gateway.pki.user(*BOB)) as bob:
        yield bob.create_job(spec, "nightly-1"), spec


def test_a_same_tenant_user_gets_nothing_of_a_job_in_a_project_it_may_not_see(
    gateway: GatewayHandle, bobs_secret_job: tuple[Job, JobSpec]
) -> None:
    job, spec = bobs_secret_job
    with gateway.client(gateway.pki.user("panda-lm", "ci-bot")) as ci:
        # The exact same request: ci-bot may not submit to inference, refused before the id is looked up.
        error = assert_refused(lambda: ci.create_job(spec, "nightly-1"), "PERMISSION_DENIED", "NOT_A_MEMBER")
        assert job.job_id not in error.message
        # A job of its own project under bob's id: the id is taken in the tenant, and that is all it learns.
        own = replace(spec, project="eval")
        error = assert_refused(lambda: ci.create_job(own, "nightly-1"), "ALREADY_EXISTS", "REQUEST_ID_REUSED")
        assert job.job_id not in error.message and "hf_secret" not in error.message
        assert ci.list_jobs() == []


def test_a_reused_job_request_id_with_another_spec_is_refused_and_a_retry_gets_the_original(
    gateway: GatewayHandle, bobs_secret_job: tuple[Job, JobSpec]
) -> None:
    job, spec = bobs_secret_job
    with gateway.client(gateway.pki.user(*BOB)) as bob:
        assert bob.create_job(spec, "nightly-1").job_id == job.job_id
        other = replace(spec, env=(("HF_TOKEN", "another"),))
        assert_refused(lambda: bob.create_job(other, "nightly-1"), "ALREADY_EXISTS", "REQUEST_ID_REUSED")
        assert [j.job_id for j in bob.list_jobs()] == [job.job_id]
