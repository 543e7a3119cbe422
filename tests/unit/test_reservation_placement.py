"""Placement honours reservations: inside an active window the reserved cards are kept for the owning
project; a job naming a reservation runs only inside it, waits for it, and fails once it is over."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gateway.app.compose import Core
from gateway.errors import AdmissionRejected
from gateway.jobs.model import JobState
from gateway.reservations.model import Reservation, ReservationState
from tests.unit.reservation_world import ALICE, BOB, FakeClock, connect, federation, job, pool, request


def active(fed: Core, clock: FakeClock, cards: int, **changes: object) -> Reservation:
    """deepsea-ai/llama-sft's reservation of `cards` ascend-910b cards, confirmed by its site and started."""
    reservation = fed.reservations.create(ALICE, request(cards, **changes))  # type: ignore[arg-type]
    for part in reservation.parts:
        fed.reservation_rounds.site_replied(part.site, reservation.reservation_id, True, "")
    clock.advance(hours=1)
    fed.scheduler.schedule()
    started = fed.reservations.get(ALICE, reservation.reservation_id)
    assert started.state == ReservationState.ACTIVE
    return started


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fed(tmp_path: Path, clock: FakeClock) -> Core:
    federation_ = federation(tmp_path, clock)
    connect(federation_, "centre-a", pool("ascend-910b", 8))
    return federation_


def test_another_project_cannot_take_the_reserved_cards_inside_the_window(fed: Core, clock: FakeClock) -> None:
    reservation = active(fed, clock, 6)
    big = job(fed, BOB, "eval", 4)
    small = job(fed, BOB, "eval", 2)
    fed.scheduler.schedule()
    assert fed.jobs.get_job(BOB, big.job_id).state == JobState.QUEUED
    assert fed.jobs.get_job(BOB, small.job_id).state == JobState.DISPATCHED  # the 2 cards nobody reserved
    why = fed.jobs.get_job(BOB, big.job_id).reasons
    reserved = [r for r in why if r.code == "RESERVED"]
    assert reserved and all(reservation.reservation_id not in r.message for r in reserved), why
    explained = fed.jobs.explain(BOB, job_id=big.job_id)
    assert any(r.code == "RESERVED" for r in explained.reasons)


def test_the_owning_project_may_use_the_reserved_cards_without_naming_them(fed: Core, clock: FakeClock) -> None:
    active(fed, clock, 6)
    mine = job(fed, ALICE, "llama-sft", 8)
    fed.scheduler.schedule()
    assert fed.jobs.get_job(ALICE, mine.job_id).state == JobState.DISPATCHED


def test_after_the_window_everyone_can_use_the_cards(fed: Core, clock: FakeClock) -> None:
    active(fed, clock, 8)
    theirs = job(fed, BOB, "eval", 8)
    fed.scheduler.schedule()
    assert fed.jobs.get_job(BOB, theirs.job_id).state == JobState.QUEUED
    clock.advance(hours=2)
    fed.scheduler.schedule()
    assert fed.jobs.get_job(BOB, theirs.job_id).state == JobState.DISPATCHED


def test_before_the_window_the_cards_are_not_kept(fed: Core, clock: FakeClock) -> None:
    reservation = fed.reservations.create(ALICE, request(8))
    fed.reservation_rounds.site_replied("centre-a", reservation.reservation_id, True, "")
    theirs = job(fed, BOB, "eval", 8)
    fed.scheduler.schedule()
    assert fed.jobs.get_job(BOB, theirs.job_id).state == JobState.DISPATCHED


def test_a_job_naming_a_reservation_waits_for_its_window_then_runs_inside_it(tmp_path: Path, clock: FakeClock) -> None:
    fed = federation(tmp_path, clock)
    connect(fed, "centre-a", pool("ascend-910b", 16))  # roomier: best fit alone would pick centre-b
    connect(fed, "centre-b", pool("ascend-910b", 4))
    reservation = fed.reservations.create(ALICE, request(4, sites=("centre-a",)))
    fed.reservation_rounds.site_replied("centre-a", reservation.reservation_id, True, "")
    named = job(fed, ALICE, "llama-sft", 4, reservation=reservation.reservation_id)
    fed.scheduler.schedule()
    waiting = fed.jobs.get_job(ALICE, named.job_id)
    assert waiting.state == JobState.QUEUED
    assert any(
        r.code == "RESERVATION_NOT_STARTED" and "starts at 2026-12-01T09:00:00Z" in r.message for r in waiting.reasons
    ), waiting.reasons
    clock.advance(hours=1)
    fed.scheduler.schedule()
    running = fed.jobs.get_job(ALICE, named.job_id)
    assert running.state == JobState.DISPATCHED and running.sites == ("centre-a",)


def test_a_job_naming_a_reservation_gets_no_more_than_its_parts_hold(fed: Core, clock: FakeClock) -> None:
    reservation = active(fed, clock, 4)
    first = job(fed, ALICE, "llama-sft", 4, reservation=reservation.reservation_id)
    second = job(fed, ALICE, "llama-sft", 2, reservation=reservation.reservation_id)
    fed.scheduler.schedule()
    assert fed.jobs.get_job(ALICE, first.job_id).state == JobState.DISPATCHED
    waiting = fed.jobs.get_job(ALICE, second.job_id)
    assert waiting.state == JobState.QUEUED
    assert any(r.code == "RESERVATION_FULL" for r in waiting.reasons), waiting.reasons


def test_a_job_whose_reservation_ended_fails_saying_so(fed: Core, clock: FakeClock) -> None:
    reservation = active(fed, clock, 8)
    theirs = job(fed, BOB, "eval", 8)  # takes the cards the moment the window closes
    fed.scheduler.schedule()
    named = job(fed, ALICE, "llama-sft", 8, reservation=reservation.reservation_id)
    clock.advance(hours=2)
    fed.scheduler.schedule()
    assert fed.jobs.get_job(BOB, theirs.job_id).state == JobState.DISPATCHED
    failed = fed.jobs.get_job(ALICE, named.job_id)
    assert failed.state == JobState.FAILED
    events = fed.store.events(named.job_id)
    assert f"reservation {reservation.reservation_id} ended at" in events[-1].message
    with pytest.raises(AdmissionRejected) as late:
        job(fed, ALICE, "llama-sft", 2, reservation=reservation.reservation_id)
    assert late.value.reason == "RESERVATION_OVER"


def test_only_the_owning_project_may_name_a_reservation(fed: Core, clock: FakeClock) -> None:
    reservation = active(fed, clock, 4)
    with pytest.raises(AdmissionRejected) as other:
        job(fed, BOB, "eval", 2, reservation=reservation.reservation_id)
    assert other.value.reason == "RESERVATION_NOT_FOUND"
    with pytest.raises(AdmissionRejected) as big:
        job(fed, ALICE, "llama-sft", 6, reservation=reservation.reservation_id)
    assert big.value.reason == "RESERVATION_TOO_SMALL"
    with pytest.raises(AdmissionRejected):
        job(fed, ALICE, "llama-sft", 2, reservation="book:nothing")


def test_cards_the_owner_uses_are_no_longer_withheld_twice(fed: Core, clock: FakeClock) -> None:
    # 6 reserved; the owner runs 4 of them: others see 8 - 4 used - 2 still reserved = 2 cards.
    active(fed, clock, 6, start=timedelta(hours=1))
    job(fed, ALICE, "llama-sft", 4)
    fed.scheduler.schedule()
    two = job(fed, BOB, "eval", 2)
    three = job(fed, BOB, "eval", 3)
    fed.scheduler.schedule()
    assert fed.jobs.get_job(BOB, two.job_id).state == JobState.DISPATCHED
    assert fed.jobs.get_job(BOB, three.job_id).state == JobState.QUEUED


def test_the_owner_uses_its_reserved_cards_first_and_other_sites_when_they_are_full(
    tmp_path: Path, clock: FakeClock
) -> None:
    fed = federation(tmp_path, clock)
    connect(fed, "centre-a", pool("ascend-910b", 16))
    connect(fed, "centre-b", pool("ascend-910b", 2))  # the best fit for 2 cards, were nothing reserved
    active(fed, clock, 2, sites=("centre-a",))
    first = job(fed, ALICE, "llama-sft", 2)
    fed.scheduler.schedule()
    assert fed.jobs.get_job(ALICE, first.job_id).sites == ("centre-a",)
    second = job(fed, ALICE, "llama-sft", 2)
    fed.scheduler.schedule()
    assert fed.jobs.get_job(ALICE, second.job_id).sites == ("centre-b",)


def test_a_job_waiting_for_a_reservation_that_is_cancelled_fails_at_the_next_cycle(fed: Core, clock: FakeClock) -> None:
    reservation = fed.reservations.create(ALICE, request(4))
    fed.reservation_rounds.site_replied("centre-a", reservation.reservation_id, True, "")
    named = job(fed, ALICE, "llama-sft", 4, reservation=reservation.reservation_id)
    fed.scheduler.schedule()
    assert fed.jobs.get_job(ALICE, named.job_id).state == JobState.QUEUED
    fed.reservations.cancel(ALICE, reservation.reservation_id)
    fed.scheduler.schedule()
    assert fed.jobs.get_job(ALICE, named.job_id).state == JobState.FAILED
    assert "was cancelled" in fed.store.events(named.job_id)[-1].message
