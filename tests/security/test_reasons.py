"""A waiting job's reasons say why it waits, and nothing of what other tenants hold.

Tenant A books the only ascend cards of a site; tenant B's job then waits. B reads its job and asks `explain`,
as an attacker mapping a competitor's plans would: the reasons say that cards are kept for another project's
reservation, and name no reservation id, tenant, project, card count or end of the window."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.jobs.model import JobState, Reason, Resources
from gateway.reservations.model import Reservation, ReservationRequest, ReservationState
from tests.integration.harness import GatewayHandle, start_test_agent, wait_for_capacity
from tests.security.support import ALICE, BOB, spec_for
from tests.waiting import eventually

SITE = "centre-a"


@pytest.fixture
def alices_window(gateway: GatewayHandle, tmp_path: Path) -> Iterator[Reservation]:
    """alice (deepsea-ai/llama-sft) holds all 8 ascend cards of the only site for an hour, from now."""
    pools = [{"class": "ascend-910b", "cards": 8, "offered": 8, "cards_per_node": 8}]
    agent = start_test_agent(gateway, SITE, pools, tmp_path / "agent")
    wait_for_capacity(gateway, SITE)
    start = datetime.now(UTC)
    request = ReservationRequest("", "llama-sft", Resources("ascend-910b", None, 8), start, start + timedelta(hours=1))
    with gateway.client(gateway.pki.user(*ALICE)) as alice:
        made = alice.create_reservation(request)
        eventually(
            lambda: alice.get_reservation(made.reservation_id).state == ReservationState.ACTIVE,
            what="the reservation's window to open",
        )
        yield alice.get_reservation(made.reservation_id)
    agent.stop()


def leaks(reasons: tuple[Reason, ...], reservation: Reservation) -> list[str]:
    """What of alice's booking the reasons give away."""
    secrets = {
        "reservation id": reservation.reservation_id,
        "tenant": reservation.tenant,
        "project": reservation.project,
        "end": reservation.end.isoformat(timespec="seconds"),
        "end (minutes)": reservation.end.isoformat(timespec="minutes"),
        # The site's offered total is public (ListSites) and a waiting job is told how many cards are free for
        # it; how many cards the booking holds is alice's.
        "card count": "8 ascend-910b cards",
    }
    text = " | ".join(f"{r.message} {r.site}" for r in reasons)
    return [name for name, value in secrets.items() if value in text]


def test_a_waiting_jobs_reasons_and_explain_name_nothing_of_another_tenants_reservation(
    gateway: GatewayHandle, alices_window: Reservation
) -> None:
    with gateway.client(gateway.pki.user(*BOB)) as bob:
        job = bob.create_job(spec_for("panda-lm", "eval"))
        eventually(lambda: any(r.code == "RESERVED" for r in bob.get_job(job.job_id).reasons), what="a RESERVED reason")
        waiting = bob.get_job(job.job_id)
        assert waiting.state == JobState.QUEUED
        assert leaks(waiting.reasons, alices_window) == [], waiting.reasons
        listed = next(j for j in bob.list_jobs() if j.job_id == job.job_id)
        assert leaks(listed.reasons, alices_window) == [], listed.reasons
        explained = bob.explain_job(job.job_id)
        assert any(r.code == "RESERVED" for r in explained.reasons)
        assert leaks(explained.reasons, alices_window) == [], explained.reasons
        dry_run = bob.explain_job(spec=spec_for("panda-lm", "eval"))
        assert leaks(dry_run.reasons, alices_window) == [], dry_run.reasons
        for candidate in dry_run.candidates:
            assert leaks(candidate.reasons, alices_window) == [], candidate
