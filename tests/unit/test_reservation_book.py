"""The reservation book over a real gateway core and store, with a clock the test turns: the state machine,
the confirmation round with the sites, validation, access, idempotency and restarts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gateway.errors import AdmissionRejected, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from gateway.reservations.model import BookCommand, ReleaseCommand, ReservationState
from gateway.reservations.rounds import CONFIRM_TIMEOUT
from gateway.sites.model import SiteTerms
from gateway.store.sqlite import SqliteStore
from tests.unit.reservation_world import (
    ADMIN,
    ALICE,
    BOB,
    CAROL,
    T0,
    FakeClock,
    connect,
    federation,
    pool,
    request,
    sent,
)

S = ReservationState


def test_a_reservation_is_confirmed_by_its_site_active_in_its_window_and_released_at_its_end(tmp_path: Path) -> None:
    clock = FakeClock()
    fed = federation(tmp_path, clock)
    outbox = connect(fed, "centre-a", pool("ascend-910b", 8))
    reservation = fed.reservations.create(ALICE, request(8))
    assert reservation.reservation_id.startswith("book:")
    assert reservation.state == S.PENDING and reservation.tenant == "deepsea-ai"
    (asked,) = sent(outbox)
    assert isinstance(asked, BookCommand)
    assert (asked.reservation_id, asked.tenant, asked.project, asked.accelerator_class, asked.cards) == (
        reservation.reservation_id,
        "deepsea-ai",
        "llama-sft",
        "ascend-910b",
        8,
    )
    assert (asked.start, asked.end) == (T0 + timedelta(hours=1), T0 + timedelta(hours=3))

    fed.reservation_rounds.site_replied("centre-a", reservation.reservation_id, True, "")
    confirmed = fed.reservations.get(ALICE, reservation.reservation_id)
    assert confirmed.state == S.CONFIRMED and [p.state for p in confirmed.parts] == [S.CONFIRMED]

    clock.advance(minutes=59)
    fed.scheduler.schedule()
    assert fed.reservations.get(ALICE, reservation.reservation_id).state == S.CONFIRMED
    clock.advance(minutes=1)
    fed.scheduler.schedule()
    assert fed.reservations.get(ALICE, reservation.reservation_id).state == S.ACTIVE
    assert sent(outbox) == []

    clock.advance(hours=2)
    fed.scheduler.schedule()
    ended = fed.reservations.get(ALICE, reservation.reservation_id)
    assert ended.state == S.ENDED and ended.reasons[-1].code == "ENDED"
    (release,) = sent(outbox)
    assert isinstance(release, ReleaseCommand) and release.reservation_id == reservation.reservation_id


def test_cancel_ends_it_at_once_and_releases_the_site(tmp_path: Path) -> None:
    fed = federation(tmp_path, FakeClock())
    outbox = connect(fed, "centre-a", pool("ascend-910b", 8))
    reservation = fed.reservations.create(ALICE, request(8))
    fed.reservation_rounds.site_replied("centre-a", reservation.reservation_id, True, "")
    sent(outbox)
    cancelled = fed.reservations.cancel(ALICE, reservation.reservation_id, "plans changed")
    assert cancelled.state == S.CANCELLED and "plans changed" in cancelled.reasons[-1].message
    assert [type(c) for c in sent(outbox)] == [ReleaseCommand]
    assert fed.reservations.cancel(ALICE, reservation.reservation_id).state == S.CANCELLED  # again: no change


def test_a_site_that_refuses_hands_its_part_to_another_site(tmp_path: Path) -> None:
    fed = federation(tmp_path, FakeClock())
    snug = connect(fed, "centre-a", pool("ascend-910b", 8))
    roomy = connect(fed, "centre-b", pool("ascend-910b", 16))
    reservation = fed.reservations.create(ALICE, request(8))
    assert [p.site for p in reservation.parts] == ["centre-a"]  # best fit first
    assert len(sent(snug)) == 1 and sent(roomy) == []
    fed.reservation_rounds.site_replied("centre-a", reservation.reservation_id, False, "site policy: offer 0 at night")
    moved = fed.reservations.get(ALICE, reservation.reservation_id)
    assert [(p.site, p.state) for p in moved.parts] == [("centre-a", S.REFUSED), ("centre-b", S.PENDING)]
    assert moved.parts[0].reason == "site policy: offer 0 at night"
    assert [type(c) for c in sent(roomy)] == [BookCommand]
    fed.reservation_rounds.site_replied("centre-b", reservation.reservation_id, True, "")
    assert fed.reservations.get(ALICE, reservation.reservation_id).state == S.CONFIRMED


def test_when_no_site_is_left_the_reservation_is_refused_with_the_sites_reasons(tmp_path: Path) -> None:
    fed = federation(tmp_path, FakeClock())
    connect(fed, "centre-a", pool("ascend-910b", 8))
    reservation = fed.reservations.create(ALICE, request(8))
    fed.reservation_rounds.site_replied(
        "centre-a", reservation.reservation_id, False, "site policy: tenant not accepted"
    )
    refused = fed.reservations.get(ALICE, reservation.reservation_id)
    assert refused.state == S.REFUSED
    assert any(r.code == "SITE_REFUSED" and "tenant not accepted" in r.message for r in refused.reasons)


def test_a_split_reservation_confirms_only_when_every_part_does_and_a_refusal_releases_the_rest(
    tmp_path: Path,
) -> None:
    fed = federation(tmp_path, FakeClock())
    a = connect(fed, "centre-a", pool("ascend-910b", 8))
    b = connect(fed, "centre-b", pool("ascend-910b", 8))
    reservation = fed.reservations.create(ALICE, request(12, max_sites=2))
    assert sorted((p.site, p.cards) for p in reservation.parts) == [("centre-a", 8), ("centre-b", 4)]
    fed.reservation_rounds.site_replied("centre-a", reservation.reservation_id, True, "")
    assert fed.reservations.get(ALICE, reservation.reservation_id).state == S.PENDING
    sent(a), sent(b)
    fed.reservation_rounds.site_replied("centre-b", reservation.reservation_id, False, "booked out")
    refused = fed.reservations.get(ALICE, reservation.reservation_id)
    assert refused.state == S.REFUSED
    assert [type(c) for c in sent(a)] == [ReleaseCommand]  # the part centre-a confirmed is let go


def test_a_silent_site_is_taken_to_refuse_after_the_timeout(tmp_path: Path) -> None:
    clock = FakeClock()
    fed = federation(tmp_path, clock)
    connect(fed, "centre-a", pool("ascend-910b", 8))
    reservation = fed.reservations.create(ALICE, request(8))
    clock.advance(seconds=CONFIRM_TIMEOUT.total_seconds() - 1)
    fed.scheduler.schedule()
    assert fed.reservations.get(ALICE, reservation.reservation_id).state == S.PENDING
    clock.advance(seconds=1)
    fed.scheduler.schedule()
    refused = fed.reservations.get(ALICE, reservation.reservation_id)
    assert refused.state == S.REFUSED and "no reply within" in refused.parts[0].reason


def test_a_late_confirmation_of_a_reservation_no_longer_wanted_is_released(tmp_path: Path) -> None:
    fed = federation(tmp_path, FakeClock())
    outbox = connect(fed, "centre-a", pool("ascend-910b", 8))
    reservation = fed.reservations.create(ALICE, request(8))
    fed.reservations.cancel(ALICE, reservation.reservation_id)
    sent(outbox)
    fed.reservation_rounds.site_replied("centre-a", reservation.reservation_id, True, "")
    assert [type(c) for c in sent(outbox)] == [ReleaseCommand]
    assert fed.reservations.get(ALICE, reservation.reservation_id).state == S.CANCELLED


def test_a_window_already_booked_out_is_refused_at_once_and_a_later_one_is_not(tmp_path: Path) -> None:
    fed = federation(tmp_path, FakeClock())
    connect(fed, "centre-a", pool("ascend-910b", 8))
    fed.reservations.create(ALICE, request(6))
    with pytest.raises(FailedPrecondition) as refused:
        fed.reservations.create(BOB, request(4, project="eval", start=timedelta(hours=2)))
    assert refused.value.reason == "NO_CAPACITY_FOR_RESERVATION"
    assert "6 of them are booked by other reservations" in refused.value.message
    later = fed.reservations.create(BOB, request(4, project="eval", start=timedelta(hours=3)))
    assert later.state == S.PENDING


def test_create_is_idempotent_by_request_id(tmp_path: Path) -> None:
    fed = federation(tmp_path, FakeClock())
    outbox = connect(fed, "centre-a", pool("ascend-910b", 8))
    first = fed.reservations.create(ALICE, request(8), "req-1")
    again = fed.reservations.create(ALICE, request(8), "req-1")
    assert again.reservation_id == first.reservation_id
    assert len(sent(outbox)) == 1


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"length": timedelta(hours=-1)}, "before it starts"),
        ({"start": timedelta(hours=-1)}, "starts in the past"),
        ({"length": timedelta(seconds=30)}, "at least 1 minute"),
        ({"length": timedelta(days=31)}, "longer than 30 days"),
        ({"cards": 0}, "cards must be between 1"),
        ({"max_sites": 99}, "max_sites"),
    ],
)
def test_a_request_that_can_never_be_booked_is_refused_naming_the_problem(
    tmp_path: Path, changes: dict[str, object], words: str
) -> None:
    fed = federation(tmp_path, FakeClock())
    connect(fed, "centre-a", pool("ascend-910b", 8))
    with pytest.raises(InvalidArgument) as refused:
        fed.reservations.create(ALICE, request(**changes))  # type: ignore[arg-type]
    assert words in refused.value.message


def test_the_policy_decides_first_unknown_projects_and_denied_classes_with_its_reason(tmp_path: Path) -> None:
    fed = federation(tmp_path, FakeClock())
    connect(fed, "centre-a", pool("nvidia-h100", 8))
    with pytest.raises(AdmissionRejected) as unknown:
        fed.reservations.create(ALICE, request(2, "nvidia-h100", project="no-such-project"))
    assert unknown.value.reason == "UNKNOWN_PROJECT"
    with pytest.raises(AdmissionRejected) as denied:
        fed.reservations.create(ALICE, request(2, "nvidia-h100", project="interns"))
    assert "interns run on smaller classes" in denied.value.message
    with pytest.raises(AdmissionRejected) as quota:
        fed.reservations.create(ALICE, request(16, "nvidia-h20", project="interns"))
    assert quota.value.reason == "QUOTA_TOO_SMALL"


def test_the_centres_own_terms_keep_a_booking_away_from_it(tmp_path: Path) -> None:
    fed = federation(tmp_path, FakeClock())
    connect(fed, "centre-a", pool("ascend-910b", 8), terms=SiteTerms(tenants=("panda-lm",), max_job_cards=2))
    with pytest.raises(FailedPrecondition) as refused:
        fed.reservations.create(ALICE, request(8))
    assert "centre-a's own policy: tenant deepsea-ai is not accepted" in refused.value.message
    # The centre's job-size limit bounds the jobs in a booking, not the booking: panda-lm books 8 cards.
    assert fed.reservations.create(BOB, request(8, project="eval")).state == S.PENDING


def test_members_act_viewers_read_and_other_tenants_see_nothing(tmp_path: Path) -> None:
    fed = federation(tmp_path, FakeClock())
    connect(fed, "centre-a", pool("ascend-910b", 16))
    with pytest.raises(PermissionDenied):
        fed.reservations.create(CAROL, request(2, project="eval"))
    booked = fed.reservations.create(BOB, request(2, project="eval"))
    assert fed.reservations.get(CAROL, booked.reservation_id).reservation_id == booked.reservation_id
    with pytest.raises(PermissionDenied):
        fed.reservations.cancel(CAROL, booked.reservation_id)
    with pytest.raises(NotFound):
        fed.reservations.get(ALICE, booked.reservation_id)
    mine = fed.reservations.create(ALICE, request(2))
    assert [r.reservation_id for r in fed.reservations.list(ALICE).reservations] == [mine.reservation_id]
    everyone = [r.reservation_id for r in fed.reservations.list(ADMIN).reservations]
    assert everyone == [booked.reservation_id, mine.reservation_id]
    with pytest.raises(InvalidArgument):
        fed.reservations.create(ADMIN, request(2))  # an admin names the tenant
    assert fed.reservations.create(ADMIN, request(2, tenant="deepsea-ai")).tenant == "deepsea-ai"


def test_a_restarted_gateway_keeps_its_reservations_and_asks_again_what_was_unanswered(tmp_path: Path) -> None:
    clock = FakeClock()
    db = str(tmp_path / "gateway.db")
    fed = federation(tmp_path, clock, SqliteStore(db))
    connect(fed, "centre-a", pool("ascend-910b", 8))
    pending = fed.reservations.create(ALICE, request(4))
    confirmed = fed.reservations.create(ALICE, request(4))
    fed.reservation_rounds.site_replied("centre-a", confirmed.reservation_id, True, "")
    fed.store.close()

    again = federation(tmp_path, clock, SqliteStore(db))
    assert set(again.reservation_ledger.live) == {pending.reservation_id, confirmed.reservation_id}
    outbox = connect(again, "centre-a", pool("ascend-910b", 8))
    again.scheduler.schedule()
    (asked,) = sent(outbox)
    assert isinstance(asked, BookCommand) and asked.reservation_id == pending.reservation_id
    clock.advance(hours=1)
    again.scheduler.schedule()
    assert again.reservations.get(ALICE, confirmed.reservation_id).state == S.ACTIVE


def test_a_reconnecting_site_is_told_again_of_its_bookings_and_asked_again_what_it_did_not_answer(
    tmp_path: Path,
) -> None:
    fed = federation(tmp_path, FakeClock())
    connect(fed, "centre-a", pool("ascend-910b", 8))
    confirmed = fed.reservations.create(ALICE, request(4))
    fed.reservation_rounds.site_replied("centre-a", confirmed.reservation_id, True, "")
    unanswered = fed.reservations.create(ALICE, request(4))
    outbox = connect(fed, "centre-a", pool("ascend-910b", 8))  # the agent restarted: a new stream
    fed.reservation_rounds.site_connected("centre-a")
    again = sent(outbox)
    books = [c for c in again if isinstance(c, BookCommand)]
    assert books == again
    assert sorted(c.reservation_id for c in books) == sorted([confirmed.reservation_id, unanswered.reservation_id])
    fed.reservation_rounds.site_replied("centre-a", confirmed.reservation_id, False, "changed its mind")
    assert fed.reservations.get(ALICE, confirmed.reservation_id).state == S.CONFIRMED  # the gateway's books hold


def test_a_listing_pages_in_creation_order_and_filters_by_project(tmp_path: Path) -> None:
    fed = federation(tmp_path, FakeClock())
    connect(fed, "centre-a", pool("ascend-910b", 64), pool("nvidia-h20", 8))
    made = [fed.reservations.create(ALICE, request(2)).reservation_id for _ in range(3)]
    other = fed.reservations.create(ALICE, request(2, "nvidia-h20", project="interns"))
    first = fed.reservations.list(ALICE, "llama-sft", page_size=2)
    assert [r.reservation_id for r in first.reservations] == made[:2] and first.next_page_token
    rest = fed.reservations.list(ALICE, "llama-sft", page_size=2, page_token=first.next_page_token)
    assert [r.reservation_id for r in rest.reservations] == made[2:] and not rest.next_page_token
    assert other.reservation_id not in [r.reservation_id for r in rest.reservations]
