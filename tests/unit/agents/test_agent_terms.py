"""The centre's terms as pure functions: offer windows, effective offers, and each reason to refuse a launch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from agents.core.model import PoolSpec
from agents.policy.terms import (
    Hours,
    LaunchRequest,
    OfferWindow,
    SitePolicy,
    effective_offer,
    judge_launch,
    next_offer_change,
)
from fedgate.common.terms import SiteTerms, image_allowed

SHANGHAI = ZoneInfo("Asia/Shanghai")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
ASCEND = PoolSpec("ascend-910b", cards=16, offered=14, cards_per_node=8)
H20 = PoolSpec("nvidia-h20", cards=8, offered=8, cards_per_node=8)

DAY_AND_NIGHT = SitePolicy(
    timezone="Asia/Shanghai",
    offers={
        "ascend-910b": (OfferWindow(0.3, Hours.parse("08:00-20:00"), WEEKDAYS), OfferWindow(0.8)),
        "nvidia-h20": (OfferWindow(1.0, Hours.parse("22:00-06:00")), OfferWindow(0.5)),
    },
)


def shanghai(day: int, hour: int, minute: int = 0) -> datetime:
    """2026-01-<day> in Shanghai; the 7th is a Wednesday, the 10th a Saturday."""
    return datetime(2026, 1, day, hour, minute, tzinfo=SHANGHAI)


def request(cards: int = 2, **changes: str) -> LaunchRequest:
    fields = {"tenant": "deepsea-ai", "project": "llama-sft", "image": "registry.example.org/deepsea/llama:1"}
    fields.update(changes)
    return LaunchRequest(fields["tenant"], fields["project"], "ascend-910b", cards, fields["image"])


# ---- windows ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minute", "inside"),
    [(22 * 60, True), (23 * 60 + 59, True), (0, True), (5 * 60 + 59, True), (6 * 60, False), (12 * 60, False)],
)
def test_a_window_that_wraps_midnight_holds_from_its_start_to_its_end(minute: int, inside: bool) -> None:
    assert Hours.parse("22:00-06:00").contains(minute) is inside


def test_a_window_holds_from_its_start_inclusive_to_its_end_exclusive() -> None:
    hours = Hours.parse("08:00-20:00")
    assert [hours.contains(m) for m in (479, 480, 1199, 1200)] == [False, True, True, False]
    assert Hours.parse("20:00-24:00").contains(23 * 60 + 59) and not Hours.parse("20:00-24:00").contains(0)


@pytest.mark.parametrize(
    ("text", "words"),
    [("8:00-20:00", "HH:MM-HH:MM"), ("08:00-20:60", "HH:MM-HH:MM"), ("10:00-10:00", "starts where it ends"),
     ("00:00-24:00", "starts where it ends"), ("24:00-06:00", "HH:MM-HH:MM"), ("08:00", "HH:MM-HH:MM")],
)  # fmt: skip
def test_hours_that_do_not_parse_say_what_to_write(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Hours.parse(text)


def test_days_and_hours_are_judged_in_the_policy_time_zone_not_in_utc() -> None:
    weekend = SitePolicy(
        timezone="Asia/Shanghai", offers={"nvidia-h20": (OfferWindow(1.0, days=("sat",)), OfferWindow(0))}
    )
    friday_evening_utc = datetime(2026, 1, 9, 18, 0, tzinfo=UTC)  # Saturday 02:00 in Shanghai
    assert effective_offer(weekend, H20, friday_evening_utc) == 8
    assert effective_offer(weekend, H20, friday_evening_utc - timedelta(hours=2, seconds=1)) == 0  # Fri 23:59:59
    assert effective_offer(DAY_AND_NIGHT, ASCEND, datetime(2026, 1, 7, 0, 0, tzinfo=UTC)) == 4  # 08:00 Shanghai
    assert effective_offer(DAY_AND_NIGHT, ASCEND, datetime(2026, 1, 6, 23, 59, tzinfo=UTC)) == 12  # 07:59


def test_the_same_instant_in_any_offset_gives_the_same_offer() -> None:
    at = shanghai(7, 10)
    assert effective_offer(DAY_AND_NIGHT, ASCEND, at) == effective_offer(DAY_AND_NIGHT, ASCEND, at.astimezone(UTC))


def test_weekdays_by_day_offer_30_percent_nights_and_weekends_80() -> None:
    assert effective_offer(DAY_AND_NIGHT, ASCEND, shanghai(7, 10)) == 4  # floor(0.3 * 16)
    assert effective_offer(DAY_AND_NIGHT, ASCEND, shanghai(7, 20)) == 12  # floor(0.8 * 16)
    assert effective_offer(DAY_AND_NIGHT, ASCEND, shanghai(10, 10)) == 12  # Saturday


def test_days_are_those_of_the_instant_itself_so_a_friday_window_ends_at_midnight() -> None:
    policy = SitePolicy(offers={"nvidia-h20": (OfferWindow(1.0, Hours.parse("22:00-06:00"), ("fri",)), OfferWindow(0))})
    assert effective_offer(policy, H20, datetime(2026, 1, 9, 23, tzinfo=UTC)) == 8  # Friday 23:00
    assert effective_offer(policy, H20, datetime(2026, 1, 10, 2, tzinfo=UTC)) == 0  # Saturday 02:00


def test_the_first_window_that_holds_wins() -> None:
    policy = SitePolicy(offers={"nvidia-h20": (OfferWindow(0.25, days=("sat",)), OfferWindow(0.75))})
    assert effective_offer(policy, H20, shanghai(10, 12)) == 2
    assert effective_offer(policy, H20, shanghai(9, 12)) == 6


# ---- effective offers ------------------------------------------------------------------------------------


def test_the_pool_offered_stays_the_ceiling() -> None:
    policy = SitePolicy(offers={"ascend-910b": (OfferWindow(1.0),)})
    assert effective_offer(policy, ASCEND, shanghai(7, 10)) == 14


def test_a_class_without_a_schedule_offers_its_pool_offered_at_all_times() -> None:
    assert effective_offer(SitePolicy(), ASCEND, shanghai(7, 10)) == 14
    assert effective_offer(DAY_AND_NIGHT, PoolSpec("hygon-k100", 4, 3, 4), shanghai(7, 10)) == 3


def test_shares_round_down_to_whole_cards_without_floating_point_losses() -> None:
    pool = PoolSpec("nvidia-h20", cards=100, offered=100, cards_per_node=8)
    assert effective_offer(SitePolicy(offers={"nvidia-h20": (OfferWindow(0.29),)}), pool, shanghai(7, 1)) == 29
    assert effective_offer(SitePolicy(offers={"nvidia-h20": (OfferWindow(0.295),)}), pool, shanghai(7, 1)) == 29
    assert effective_offer(SitePolicy(offers={"nvidia-h20": (OfferWindow(0),)}), pool, shanghai(7, 1)) == 0


def test_next_offer_change_is_the_next_window_edge_in_the_policy_time_zone() -> None:
    assert next_offer_change(DAY_AND_NIGHT, shanghai(7, 10)) == shanghai(7, 20)
    assert next_offer_change(DAY_AND_NIGHT, shanghai(7, 20)) == shanghai(7, 22)  # the H20 night window
    assert next_offer_change(DAY_AND_NIGHT, shanghai(7, 23)) == shanghai(8, 0)  # days change at midnight
    assert next_offer_change(SitePolicy(), shanghai(7, 10)) is None
    assert next_offer_change(SitePolicy(offers={"nvidia-h20": (OfferWindow(0.5),)}), shanghai(7, 10)) is None


# ---- launches --------------------------------------------------------------------------------------------


def test_a_launch_within_every_term_is_accepted() -> None:
    policy = SitePolicy(
        tenants=("deepsea-ai",),
        projects=("deepsea-ai/llama-sft",),
        max_job_cards=4,
        image_registries=("registry.example.org",),
    )
    assert judge_launch(policy, ASCEND, request(cards=4), shanghai(7, 10)) is None


def test_a_tenant_the_centre_does_not_serve_is_refused_by_name() -> None:
    refusal = judge_launch(SitePolicy(tenants=("panda-lm",)), ASCEND, request(), shanghai(7, 10))
    assert refusal is not None and refusal.term == "tenants"
    assert refusal.message == "site policy: tenant deepsea-ai is not accepted here"


def test_projects_limit_only_the_tenants_they_name() -> None:
    policy = SitePolicy(tenants=("deepsea-ai", "panda-lm"), projects=("deepsea-ai/llama-sft",))
    at = shanghai(7, 10)
    refusal = judge_launch(policy, ASCEND, request(project="moe-pretrain"), at)
    assert refusal is not None and refusal.term == "projects"
    assert refusal.message == "site policy: project deepsea-ai/moe-pretrain is not accepted here"
    assert judge_launch(policy, ASCEND, request(project="llama-sft"), at) is None
    assert judge_launch(policy, ASCEND, request(tenant="panda-lm", project="eval"), at) is None


def test_a_job_larger_than_max_job_cards_is_refused() -> None:
    refusal = judge_launch(SitePolicy(max_job_cards=8), ASCEND, request(cards=9), shanghai(7, 10))
    assert refusal is not None and refusal.term == "max_job_cards"
    assert "at most 8 cards" in refusal.message and "needs 9" in refusal.message
    assert judge_launch(SitePolicy(max_job_cards=8), ASCEND, request(cards=8), shanghai(7, 10)) is None


def test_an_image_from_another_registry_is_refused_naming_the_allowed_ones() -> None:
    policy = SitePolicy(image_registries=("registry.example.org", "harbor.centre-a.cn/ai"))
    refusal = judge_launch(policy, ASCEND, request(image="docker.io/library/python:3.11"), shanghai(7, 10))
    assert refusal is not None and refusal.term == "image_registries"
    assert refusal.message == (
        "site policy: image docker.io/library/python:3.11 is not from an allowed registry "
        "(registry.example.org, harbor.centre-a.cn/ai)"
    )


@pytest.mark.parametrize(
    ("image", "allowed"),
    [
        ("registry.example.org/team/app:1", True),
        ("registry.example.org/app@sha256:" + "ab" * 32, True),
        ("registry.example.org/app@sha256:abc", False),  # not a digest: references are parsed, not prefixed
        ("registry.example.org", False),
        ("registry.example.org/", False),
        ("registry.example.org.evil.example/app:1", False),
        ("registry.example.org:5001/app:1", False),  # another port is another service
        ("evil.example/registry.example.org/app:1", False),
        ("harbor.centre-a.cn/ai/eval:2", True),
        ("harbor.centre-a.cn/ai:2", True),  # the repository itself, with a tag
        ("harbor.centre-a.cn/ai", True),
        ("harbor.centre-a.cn/aix/eval:2", False),
        ("harbor.centre-a.cn/other/eval:2", False),
        ("host:5000/app", True),
        ("", False),  # a bare command runs whatever the machine has: refused once registries are named
        ("registry.example.org/../evil.io/x", False),  # climbs out of the registry
        ("registry.example.org/team/app:1\n", False),
    ],
)
def test_image_prefixes_match_whole_path_components(image: str, allowed: bool) -> None:
    assert image_allowed(image, ("registry.example.org", "harbor.centre-a.cn/ai", "host:5000")) is allowed


def test_a_launch_larger_than_the_current_offer_is_refused_naming_the_window() -> None:
    refusal = judge_launch(DAY_AND_NIGHT, ASCEND, request(cards=6), shanghai(7, 10))
    assert refusal is not None and refusal.term == "offers"
    assert refusal.message == (
        "site policy: ascend-910b is offered at 4 cards now (30 % of 16 during mon-fri 08:00-20:00 "
        "Asia/Shanghai); this job needs 6"
    )
    assert judge_launch(DAY_AND_NIGHT, ASCEND, request(cards=6), shanghai(7, 21)) is None


def test_cards_held_by_running_jobs_count_against_the_offer() -> None:
    refusal = judge_launch(DAY_AND_NIGHT, ASCEND, request(cards=4), shanghai(7, 10), in_use=2)
    assert refusal is not None and "and 2 of them are in use" in refusal.message
    # After the window shrank the offer below what runs, nothing is free: free is never negative.
    refusal = judge_launch(DAY_AND_NIGHT, ASCEND, request(cards=1), shanghai(7, 10), in_use=10)
    assert refusal is not None and "and 4 of them are in use" in refusal.message


def test_terms_are_checked_in_a_fixed_order_tenant_first() -> None:
    policy = SitePolicy(tenants=("panda-lm",), max_job_cards=1, image_registries=("registry.example.org",))
    refusal = judge_launch(policy, ASCEND, request(cards=9, image="docker.io/x"), shanghai(7, 10))
    assert refusal is not None and refusal.term == "tenants"


def test_the_reported_terms_leave_out_time_windows_and_mark_no_limit_as_zero() -> None:
    assert DAY_AND_NIGHT.terms == SiteTerms()
    policy = SitePolicy(tenants=("a",), projects=("a/b",), max_job_cards=16, image_registries=("r.example",))
    assert policy.terms == SiteTerms(("a",), ("a/b",), 16, ("r.example",))


def test_windows_follow_the_local_wall_clock_across_a_daylight_saving_change() -> None:
    policy = SitePolicy(
        timezone="Europe/Berlin", offers={"nvidia-h20": (OfferWindow(1.0, Hours.parse("08:00-20:00")), OfferWindow(0))}
    )
    # Berlin is UTC+1 before 2026-03-29 and UTC+2 after: the window opens at 07:00 UTC, then at 06:00 UTC.
    assert effective_offer(policy, H20, datetime(2026, 3, 28, 7, 0, tzinfo=UTC)) == 8
    assert effective_offer(policy, H20, datetime(2026, 3, 28, 6, 30, tzinfo=UTC)) == 0
    assert effective_offer(policy, H20, datetime(2026, 3, 30, 6, 30, tzinfo=UTC)) == 8
    assert next_offer_change(policy, datetime(2026, 3, 29, 20, 0, tzinfo=UTC)) == datetime(
        2026, 3, 30, 6, 0, tzinfo=UTC
    )
