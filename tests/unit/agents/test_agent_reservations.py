"""Advance reservations at the centre: confirmed by its own terms and its offer over the window, less the other
reservations it holds for overlapping windows; released on Abort."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from agents.core import reservations
from agents.core.commands import Abort, Reserve
from agents.core.model import PoolSpec
from agents.core.reservations import SiteReservations
from agents.core.runtime import SiteRuntime
from agents.journal.base import MemoryJournal
from agents.policy.terms import Hours, OfferWindow, SitePolicy

from .fakes import FakeBackend
from .test_agent_runtime import make_config

SHANGHAI = ZoneInfo("Asia/Shanghai")
ASCEND = PoolSpec("ascend-910b", cards=16, offered=14, cards_per_node=8)
# 30 % of 16 = 4 cards on weekdays 08:00-20:00, 80 % (12) otherwise.
POLICY = SitePolicy(
    tenants=("deepsea-ai", "panda-lm"),
    projects=("deepsea-ai/llama-sft",),
    timezone="Asia/Shanghai",
    offers={
        "ascend-910b": (
            OfferWindow(0.3, Hours.parse("08:00-20:00"), ("mon", "tue", "wed", "thu", "fri")),
            OfferWindow(0.8),
        )
    },
)
WEDNESDAY_NIGHT = datetime(2026, 1, 7, 21, 0, tzinfo=SHANGHAI)
NOW = WEDNESDAY_NIGHT - timedelta(days=1)


def reserve(
    rid: str = "book:1",
    cards: int = 8,
    start: datetime = WEDNESDAY_NIGHT,
    hours: float = 6,
    tenant: str = "deepsea-ai",
    project: str = "llama-sft",
    cls: str = "ascend-910b",
) -> Reserve:
    end = start + timedelta(hours=hours)
    return Reserve(rid, "", cls, cards, tenant=tenant, project=project, start=start, end=end)


@pytest.fixture
def confirmed() -> SiteReservations:
    return SiteReservations("centre-a", POLICY, {"ascend-910b": ASCEND})


def test_a_reservation_inside_the_night_offer_is_confirmed(confirmed: SiteReservations) -> None:
    reply = confirmed.reserve(reserve(cards=12, hours=6), NOW)  # 21:00-03:00: 12 cards offered throughout
    assert reply.accepted and reply.free == 0
    assert [b.reservation_id for b in confirmed.all()] == ["book:1"]


def test_a_reservation_reaching_into_the_day_offer_is_refused_with_the_lowest_offer_in_its_window(
    confirmed: SiteReservations,
) -> None:
    reply = confirmed.reserve(reserve(cards=8, hours=12), NOW)  # 21:00-09:00 Thursday: from 08:00 only 4 are offered
    assert not reply.accepted
    assert reply.reason.startswith("site policy: ascend-910b: 4 cards are offered through the whole window")
    assert "needs 8" in reply.reason and reply.free == 4
    assert confirmed.all() == []


def test_the_centres_terms_refuse_tenants_and_projects_it_does_not_take(confirmed: SiteReservations) -> None:
    tenant = confirmed.reserve(reserve(tenant="orca-labs", project="x"), NOW)
    assert not tenant.accepted and tenant.reason == "site policy: tenant orca-labs is not accepted here"
    project = confirmed.reserve(reserve(project="moe-pretrain"), NOW)
    assert not project.accepted and "project deepsea-ai/moe-pretrain is not accepted" in project.reason
    unknown = confirmed.reserve(reserve(cls="nvidia-h100"), NOW)
    assert not unknown.accepted and "no pool of nvidia-h100; it offers ascend-910b" in unknown.reason


def test_overlapping_reservations_share_the_offer_and_disjoint_ones_do_not(confirmed: SiteReservations) -> None:
    assert confirmed.reserve(reserve("book:1", cards=8, hours=3), NOW).accepted
    overlapping = confirmed.reserve(
        reserve("book:2", cards=8, start=WEDNESDAY_NIGHT + timedelta(hours=2), hours=3), NOW
    )
    assert not overlapping.accepted and "8 of them are booked for overlapping windows" in overlapping.reason
    assert confirmed.reserve(
        reserve("book:3", cards=4, start=WEDNESDAY_NIGHT + timedelta(hours=2), hours=3), NOW
    ).accepted
    later = confirmed.reserve(reserve("book:4", cards=12, start=WEDNESDAY_NIGHT + timedelta(days=2), hours=3), NOW)
    assert later.accepted  # Friday night: nothing else booked then


def test_a_repeated_reservation_is_confirmed_again_and_a_release_frees_its_cards(confirmed: SiteReservations) -> None:
    assert confirmed.reserve(reserve("book:1", cards=12), NOW).accepted
    assert confirmed.reserve(reserve("book:1", cards=12), NOW).accepted  # the gateway asked again: same answer
    assert not confirmed.reserve(reserve("book:2", cards=4), NOW).accepted
    released = confirmed.release("book:1", "cancelled")
    assert released is not None and released.cards == 12
    assert confirmed.release("book:1") is None
    assert confirmed.reserve(reserve("book:2", cards=4), NOW).accepted


def test_a_schedule_too_busy_to_follow_falls_back_to_the_offer_now_and_says_so(
    confirmed: SiteReservations, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reservations, "MAX_OFFER_STEPS", 1)
    day = WEDNESDAY_NIGHT - timedelta(hours=10)  # 11:00: the day offer of 4 cards holds now
    reply = confirmed.reserve(reserve(cards=8, hours=30), day)
    assert not reply.accepted and "offered now (its schedule is too busy to follow this window)" in reply.reason


async def test_the_runtime_answers_a_windowed_reserve_and_releases_on_abort() -> None:
    config = replace(make_config(ASCEND), policy=POLICY)
    runtime = SiteRuntime(config, FakeBackend(), MemoryJournal(), clock=lambda: NOW)
    reply = await runtime.handle(reserve(cards=12))
    assert reply is not None and reply.accepted and reply.reservation_id == "book:1"
    assert [b.cards for b in runtime.reservations.all()] == [12]
    assert await runtime.handle(Abort("book:1", "the reservation was cancelled")) is None
    assert runtime.reservations.all() == []
    refused = await runtime.handle(reserve("book:2", tenant="orca-labs"))
    assert refused is not None and not refused.accepted


def test_reservations_whose_window_closed_hold_nothing_even_without_an_abort(confirmed: SiteReservations) -> None:
    assert confirmed.reserve(reserve("book:1", cards=12, hours=3), NOW).accepted
    after = WEDNESDAY_NIGHT + timedelta(hours=3)
    assert confirmed.reserve(reserve("book:2", cards=12, start=after, hours=3), after).accepted
    assert [b.reservation_id for b in confirmed.all()] == ["book:2"]
