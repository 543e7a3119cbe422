"""Advance reservations through real parts: a real gateway over mTLS and real agents that confirm or refuse
bookings by their own terms, a job that waits for its window and runs inside it, another project kept off
the reserved cards, and a cancel that releases the booking at the site."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.cli import reservation as reservation_cli
from gateway.errors import ClientError
from gateway.jobs.model import JobSpec, JobState, Resources, StackRun
from gateway.reservations.model import ReservationRequest, ReservationState
from gateway.transport.client import FederationClient
from tests.integration.harness import AgentHandle, GatewayHandle, start_test_agent, wait_for_capacity
from tests.waiting import eventually, wait_cycles

S = ReservationState


def ascend_pool(cards: int = 8, offered: int = 8) -> list[dict[str, object]]:
    return [{"class": "ascend-910b", "cards": cards, "offered": offered, "cards_per_node": 8}]


def job_spec(tenant: str, project: str, cards: int, reservation: str = "") -> JobSpec:
    return JobSpec(
        tenant=tenant,
        project=project,
        resources=Resources("ascend-910b", None, cards),
        runs=(StackRun("cann", "", ("python3", "-c", "print('ok')")),),
        reservation=reservation,
    )


def booking(
    project: str, cards: int, start: datetime, length: timedelta, sites: tuple[str, ...] = ()
) -> ReservationRequest:
    return ReservationRequest("", project, Resources("ascend-910b", None, cards), start, start + length, sites=sites)


def settled(client: FederationClient, reservation_id: str) -> S:
    """The reservation's state once its sites have answered."""
    eventually(lambda: client.get_reservation(reservation_id).state != S.PENDING, what="the sites' answers")
    return client.get_reservation(reservation_id).state


@pytest.fixture
def two_sites(gateway: GatewayHandle, tmp_path: Path) -> Iterator[None]:
    """centre-a with 8 ascend-910b cards; centre-b with NVIDIA cards only, so the ascend cards are all at a."""
    a = start_test_agent(gateway, "centre-a", ascend_pool(), tmp_path / "a")
    h100 = [{"class": "nvidia-h100", "cards": 8, "offered": 8, "cards_per_node": 8}]
    b = start_test_agent(gateway, "centre-b", h100, tmp_path / "b")
    wait_for_capacity(gateway, "centre-a")
    wait_for_capacity(gateway, "centre-b")
    yield
    a.stop()
    b.stop()


def test_a_job_waits_for_its_reservation_runs_inside_it_and_others_stay_off_the_cards(
    gateway: GatewayHandle, two_sites: None
) -> None:
    start = datetime.now(UTC) + timedelta(seconds=8)
    with (
        gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice,
        gateway.client(gateway.pki.user("panda-lm", "bob")) as bob,
    ):
        reservation = alice.create_reservation(booking("llama-sft", 8, start, timedelta(minutes=2)))
        assert reservation.state == S.PENDING and reservation.reservation_id.startswith("book:")
        assert settled(alice, reservation.reservation_id) == S.CONFIRMED
        confirmed = alice.get_reservation(reservation.reservation_id)
        assert [(p.site, p.cards, p.state) for p in confirmed.parts] == [("centre-a", 8, S.CONFIRMED)]

        named = alice.create_job(job_spec("deepsea-ai", "llama-sft", 2, reservation.reservation_id))
        waiting = alice.get_job(named.job_id)
        assert waiting.state == JobState.QUEUED
        assert any(r.code == "RESERVATION_NOT_STARTED" for r in waiting.reasons), waiting.reasons
        eventually(lambda: alice.get_job(named.job_id).state == JobState.SUCCEEDED, timeout=40, what="the named job")
        events = gateway.running.core.store.events(named.job_id)
        dispatched = [e for e in events if e.state == JobState.DISPATCHED]
        assert dispatched and dispatched[0].time >= start and dispatched[0].site == "centre-a"
        assert alice.get_reservation(reservation.reservation_id).state == S.ACTIVE

        theirs = bob.create_job(job_spec("panda-lm", "eval", 2))
        eventually(
            lambda: any(r.code == "RESERVED" for r in bob.get_job(theirs.job_id).reasons), what="a RESERVED reason"
        )
        wait_cycles(gateway, 5)  # five more scheduling cycles: it must still not be placed on reserved cards
        assert bob.get_job(theirs.job_id).state == JobState.QUEUED

        alice.cancel_reservation(reservation.reservation_id, "done early")
        eventually(lambda: bob.get_job(theirs.job_id).state == JobState.SUCCEEDED, timeout=20, what="bob's job")
        # The agent let the booking go: another project books the same cards for the same window at once.
        again = bob.create_reservation(booking("eval", 8, start + timedelta(seconds=30), timedelta(minutes=2)))
        assert settled(bob, again.reservation_id) == S.CONFIRMED


def test_a_site_that_cannot_keep_the_cards_in_the_window_refuses_and_another_site_takes_the_booking(
    gateway: GatewayHandle, tmp_path: Path
) -> None:
    start = (datetime.now(UTC) + timedelta(hours=1)).replace(second=0, microsecond=0)
    end = start + timedelta(minutes=10)
    # centre-b offers half its pool now, but nothing around the booked window; it takes only deepsea-ai.
    dark = f"{(start - timedelta(minutes=5)):%H:%M}-{(end + timedelta(minutes=5)):%H:%M}"
    policy = {"tenants": ["deepsea-ai"], "offers": {"ascend-910b": [{"hours": dark, "share": 0}, {"share": 0.5}]}}
    a = start_test_agent(gateway, "centre-a", ascend_pool(), tmp_path / "a")
    b = start_test_agent(gateway, "centre-b", ascend_pool(8, 8), tmp_path / "b", policy=policy)
    try:
        wait_for_capacity(gateway, "centre-a")
        wait_for_capacity(gateway, "centre-b")
        with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
            # Best fit asks centre-b first (it offers 4 now: a snug fit); its own schedule says no.
            reservation = alice.create_reservation(booking("llama-sft", 4, start, end - start))
            assert [p.site for p in reservation.parts] == ["centre-b"]
            assert settled(alice, reservation.reservation_id) == S.CONFIRMED
            parts = alice.get_reservation(reservation.reservation_id).parts
            assert [(p.site, p.state) for p in parts] == [("centre-b", S.REFUSED), ("centre-a", S.CONFIRMED)]
            assert parts[0].reason.startswith("site policy: ascend-910b: 0 cards are offered"), parts[0].reason

        with gateway.client(gateway.pki.user("panda-lm", "bob")) as bob, pytest.raises(ClientError) as refused:
            bob.create_reservation(booking("eval", 2, start, end - start, sites=("centre-b",)))
        assert refused.value.code == "FAILED_PRECONDITION" and refused.value.reason == "NO_CAPACITY_FOR_RESERVATION"
        assert "centre-b's own policy: tenant panda-lm is not accepted" in refused.value.message
    finally:
        a.stop()
        b.stop()


def test_the_cli_books_shows_lists_and_cancels_with_exit_codes_scripts_trust(
    gateway: GatewayHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent: AgentHandle = start_test_agent(gateway, "centre-a", ascend_pool(), tmp_path / "a")
    try:
        wait_for_capacity(gateway, "centre-a")
        alice = ["--gateway", gateway.address, "--creds", str(gateway.pki.user("deepsea-ai", "alice"))]
        create = ["create", "--project", "llama-sft", "--class", "ascend-910b", "--cards", "4"]
        code = reservation_cli.main([*create, "--start", "+1h", "--end", "+2h", "--wait", "-o", "json", *alice])
        assert code == 0
        [row] = json.loads(capsys.readouterr().out)
        assert row["state"] == "CONFIRMED" and row["sites"] == ["centre-a"] and row["parts"][0]["cards"] == 4
        rid = row["reservation_id"]
        assert reservation_cli.main(["get", rid, *alice]) == 0
        assert rid in capsys.readouterr().out
        assert reservation_cli.main(["list", "-o", "yaml", *alice]) == 0
        assert rid in capsys.readouterr().out
        with gateway.client(gateway.pki.admin()) as admin:  # CI systems with a token, on the public port
            token = admin.issue_token("deepsea-ai", "ci-bot", ttl=timedelta(minutes=5)).token
        with gateway.token_client(token) as ci:
            assert [r.reservation_id for r in ci.list_reservations()] == [rid]
        with gateway.token_client(token[:-4] + "AAAA") as forged, pytest.raises(ClientError) as refused:
            forged.list_reservations()
        assert refused.value.code == "UNAUTHENTICATED"
        assert reservation_cli.main(["cancel", rid, "-o", "json", *alice]) == 0
        assert json.loads(capsys.readouterr().out)[0]["state"] == "CANCELLED"
        # Bad input: exit 2 before any call; an impossible booking: refused, exit 1; unknown id: exit 4.
        assert reservation_cli.main([*create, "--start", "noon", "--end", "+1h", *alice]) == 2
        assert "not a time" in capsys.readouterr().err
        assert reservation_cli.main([*create[:-1], "64", "--start", "+1h", "--end", "+2h", *alice]) == 1
        assert "no site can book 64 cards" in capsys.readouterr().err
        assert reservation_cli.main(["get", "book:nothing", *alice]) == 4
    finally:
        agent.stop()
