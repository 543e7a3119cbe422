"""Planning a booking is a pure function over a snapshot of sites and the other bookings: each rule a test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.app.config import REPO_POLICIES
from gateway.jobs.model import Capability, JobSpec, Reason, Resources, StackRun
from gateway.policy import load_catalogue
from gateway.reservations.model import Reservation, ReservationPart, ReservationRequest, ReservationState
from gateway.reservations.plan import booked_cards, plan_booking
from gateway.sites.model import Pool, SiteView

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
CATALOGUE = load_catalogue(REPO_POLICIES / "accelerators.yaml")


def site(name: str, *pools: Pool, connected: bool = True, draining: bool = False) -> SiteView:
    return SiteView(name, connected, draining, pools)


def pool(cls: str, offered: int) -> Pool:
    return Pool(cls, offered, offered, 0, 8)  # free does not matter: a booking is about the future


def allow_all(view: SiteView, cls: str) -> Reason | None:
    return None


def booking(rid: str, site_name: str, cls: str, cards: int, start: float, end: float) -> Reservation:
    request = ReservationRequest(
        "deepsea-ai", "llama-sft", Resources(cls, None, cards), T0 + timedelta(hours=start), T0 + timedelta(hours=end)
    )
    part = ReservationPart(site_name, cls, cards, ReservationState.CONFIRMED)
    return Reservation(rid, request, ReservationState.CONFIRMED, T0, T0, parts=(part,))


def parts(plan: object) -> list[tuple[str, str, int]]:
    return [(p.site, p.accelerator_class, p.cards) for p in plan.parts]  # type: ignore[attr-defined]


def test_a_booking_goes_to_the_site_with_its_class_by_best_fit() -> None:
    sites = [
        site("roomy", pool("ascend-910b", 32)),
        site("snug", pool("ascend-910b", 8)),
        site("h", pool("nvidia-h100", 8)),
    ]
    plan = plan_booking(8, ["ascend-910b"], sites, {}, allow_all)
    assert parts(plan) == [("snug", "ascend-910b", 8)]


def test_a_capability_may_be_booked_on_any_class_that_meets_it() -> None:
    spec = JobSpec(
        "t", "p", Resources("", Capability(min_memory_gib=90, stacks=("cuda",)), 4), (StackRun(command=("x",)),)
    )
    classes = CATALOGUE.classes_for(spec)
    assert "nvidia-h20" in classes and "nvidia-h100" not in classes  # 96 GiB meets it, 80 GiB does not
    sites = [site("a", pool("nvidia-h100", 8)), site("b", pool("nvidia-h20", 8))]
    assert parts(plan_booking(4, classes, sites, {}, allow_all)) == [("b", "nvidia-h20", 4)]


def test_bookings_in_overlapping_windows_take_their_cards_and_disjoint_ones_do_not() -> None:
    others = [booking("book:1", "a", "ascend-910b", 6, 1, 3), booking("book:2", "a", "ascend-910b", 8, 5, 6)]
    sites = [site("a", pool("ascend-910b", 8))]
    overlapping = booked_cards(others, T0 + timedelta(hours=2), T0 + timedelta(hours=4))
    assert overlapping == {("a", "ascend-910b"): 6}
    refused = plan_booking(4, ["ascend-910b"], sites, overlapping, allow_all)
    assert not refused.parts
    assert refused.reasons[0].code == "BOOKED_OUT" and "6 of them are booked" in refused.reasons[0].message
    later = booked_cards(others, T0 + timedelta(hours=3), T0 + timedelta(hours=5))  # touches both, overlaps none
    assert parts(plan_booking(8, ["ascend-910b"], sites, later, allow_all)) == [("a", "ascend-910b", 8)]


def test_ended_and_cancelled_bookings_hold_nothing() -> None:
    gone = booking("book:1", "a", "ascend-910b", 8, 1, 3).evolve(state=ReservationState.CANCELLED)
    assert booked_cards([gone], T0, T0 + timedelta(hours=4)) == {}


def test_cards_are_split_over_at_most_max_sites_largest_first() -> None:
    sites = [site("a", pool("ascend-910b", 4)), site("b", pool("ascend-910b", 8)), site("c", pool("ascend-910b", 6))]
    assert parts(plan_booking(12, ["ascend-910b"], sites, {}, allow_all, max_sites=2)) == [
        ("b", "ascend-910b", 8),
        ("c", "ascend-910b", 4),
    ]
    too_few = plan_booking(16, ["ascend-910b"], sites, {}, allow_all, max_sites=2)
    assert not too_few.parts
    assert too_few.reasons[-1].code == "SPLIT_TOO_SMALL" and "14 of the 16" in too_few.reasons[-1].message
    assert not plan_booking(12, ["ascend-910b"], sites, {}, allow_all).parts  # one site only by default


def test_the_policys_refusal_is_the_reason_a_site_is_not_booked() -> None:
    def residency(view: SiteView, cls: str) -> Reason | None:
        return (
            Reason("policy", "RESIDENCY", f"{view.name} is in region cn-north", view.name) if view.name == "b" else None
        )

    sites = [site("b", pool("ascend-910b", 8)), site("a", pool("ascend-910b", 4))]
    assert parts(plan_booking(4, ["ascend-910b"], sites, {}, residency)) == [("a", "ascend-910b", 4)]
    refused = plan_booking(8, ["ascend-910b"], sites, {}, residency)
    assert not refused.parts
    assert {r.code for r in refused.reasons} == {"RESIDENCY", "BOOKED_OUT"}


def test_offline_draining_unnamed_and_refusing_sites_are_not_asked() -> None:
    sites = [
        site("off", pool("ascend-910b", 8), connected=False),
        site("drain", pool("ascend-910b", 8), draining=True),
        site("other", pool("ascend-910b", 8)),
        site("said-no", pool("ascend-910b", 8)),
    ]
    plan = plan_booking(
        8, ["ascend-910b"], sites, {}, allow_all, sites=("off", "drain", "said-no"), exclude=("said-no",)
    )
    assert not plan.parts
    assert {r.code for r in plan.reasons} == {"SITE_OFFLINE", "SITE_DRAINING"}
    nobody = plan_booking(8, ["ascend-910b"], sites, {}, allow_all, sites=("said-no",), exclude=("said-no",))
    assert nobody.reasons[0].code == "NO_SITES" and "said-no" in nobody.reasons[0].message
