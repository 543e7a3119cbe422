"""The runtime enforcing the centre's terms: refused launches hand the lease back, offers follow the windows,
and a window that shrinks the offer never stops a running job."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from agents.core.commands import Launch
from agents.core.model import JobState, PoolSpec
from agents.core.runtime import SiteRuntime
from agents.journal.base import MemoryJournal
from agents.policy.terms import Hours, OfferWindow, SitePolicy
from fedgate.common.terms import SiteTerms

from .fakes import FakeBackend
from .test_agent_runtime import make_config

SHANGHAI = ZoneInfo("Asia/Shanghai")
ASCEND = PoolSpec("ascend-910b", cards=16, offered=14, cards_per_node=8)
POLICY = SitePolicy(
    tenants=("deepsea-ai", "panda-lm"),
    projects=("deepsea-ai/llama-sft",),
    max_job_cards=8,
    image_registries=("registry.example.org",),
    timezone="Asia/Shanghai",
    offers={
        "ascend-910b": (
            OfferWindow(0.3, Hours.parse("08:00-20:00"), ("mon", "tue", "wed", "thu", "fri")),
            OfferWindow(0.8),
        )
    },
)
WEDNESDAY_DAY = datetime(2026, 1, 7, 10, 0, tzinfo=SHANGHAI)
WEDNESDAY_NIGHT = datetime(2026, 1, 7, 21, 0, tzinfo=SHANGHAI)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(WEDNESDAY_DAY)


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def runtime(backend: FakeBackend, clock: Clock) -> SiteRuntime:
    config = replace(make_config(ASCEND), policy=POLICY)
    return SiteRuntime(config, backend, MemoryJournal(), clock=clock)


def launch(
    job: str = "j1",
    cards: int = 2,
    tenant: str = "panda-lm",
    project: str = "eval",
    image: str = "registry.example.org/panda/eval:1",
) -> Launch:
    return Launch(job, 1, 1, "ascend-910b", cards, ("x",), tenant=tenant, project=project, image=image)


def ascend(runtime: SiteRuntime) -> tuple[int, int, int]:
    (pool,) = runtime.capacity()
    return pool.total, pool.offered, pool.free


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (launch(tenant="acme-ai"), "site policy: tenant acme-ai is not accepted here"),
        (launch(tenant="deepsea-ai", project="moe"), "site policy: project deepsea-ai/moe is not accepted here"),
        (launch(cards=9), "site policy: jobs of at most 8 cards are accepted here; this one needs 9"),
        (
            launch(image="docker.io/library/python:3.11"),
            "site policy: image docker.io/library/python:3.11 is not from an allowed registry (registry.example.org)",
        ),
        (
            launch(cards=6),
            "site policy: ascend-910b is offered at 4 cards now (30 % of 16 during mon-fri 08:00-20:00 "
            "Asia/Shanghai); this job needs 6",
        ),
    ],
)
async def test_a_launch_the_terms_refuse_fails_with_the_lease_returned_and_the_term_named(
    runtime: SiteRuntime, backend: FakeBackend, command: Launch, message: str
) -> None:
    await runtime.handle(command)
    (update,) = runtime.unacknowledged_updates()
    assert (update.state, update.lease_returned, update.message) == (JobState.FAILED, True, message)
    assert (update.exit_code, update.device_indices) == (0, ())
    assert backend.launched == []
    assert ascend(runtime) == (16, 4, 4)
    assert runtime.running() == []


async def test_a_launch_within_the_terms_runs(runtime: SiteRuntime, backend: FakeBackend) -> None:
    await runtime.handle(launch(cards=4, tenant="deepsea-ai", project="llama-sft"))
    (update,) = runtime.unacknowledged_updates()
    assert update.state is JobState.RUNNING and len(update.device_indices) == 4
    assert [spec.tenant for spec in backend.launched] == ["deepsea-ai"]
    assert ascend(runtime) == (16, 4, 0)


async def test_capacity_carries_the_offer_of_the_window_in_force(runtime: SiteRuntime, clock: Clock) -> None:
    assert ascend(runtime) == (16, 4, 4)
    clock.now = WEDNESDAY_NIGHT
    assert ascend(runtime) == (16, 12, 12)
    assert runtime.terms() == SiteTerms(
        ("deepsea-ai", "panda-lm"), ("deepsea-ai/llama-sft",), 8, ("registry.example.org",)
    )


async def test_a_shrinking_window_never_stops_running_jobs_and_the_offer_shrinks_as_they_end(
    runtime: SiteRuntime, backend: FakeBackend, clock: Clock
) -> None:
    clock.now = WEDNESDAY_NIGHT
    await runtime.handle(launch("a", cards=8))
    await runtime.handle(launch("b", cards=2))
    assert ascend(runtime) == (16, 12, 2)
    clock.now = WEDNESDAY_DAY + timedelta(days=1)  # Thursday 10:00: the day offer is 4, 10 cards are in use
    runtime.refresh_offers()
    await settle()
    assert ascend(runtime) == (16, 4, 0)
    assert sorted(r.job_id for r in runtime.running()) == ["a", "b"]
    assert all(not handle.cancel_graces for handle in backend.handles.values())
    await runtime.handle(launch("c", cards=1))
    refused = runtime.unacknowledged_updates()[-1]
    assert refused.lease_returned and "offered at 4 cards now" in refused.message
    assert "and 4 of them are in use" in refused.message
    backend.finish("a", 1)
    await settle()
    assert ascend(runtime) == (16, 4, 2)  # 2 cards still held by b
    await runtime.handle(launch("d", cards=2))
    assert runtime.unacknowledged_updates()[-1].state is JobState.RUNNING


async def test_refresh_offers_reports_a_window_change_and_says_when_the_next_one_is(
    runtime: SiteRuntime, clock: Clock
) -> None:
    version = runtime.capacity_version
    assert runtime.refresh_offers() == 10 * 3600  # 10:00 -> 20:00 Shanghai
    assert runtime.capacity_version == version  # nothing changed yet
    clock.now = WEDNESDAY_DAY.replace(hour=20)
    assert runtime.refresh_offers() == 4 * 3600  # the days change at midnight
    assert runtime.capacity_version == version + 1


async def test_without_a_policy_nothing_changes_with_time(backend: FakeBackend, clock: Clock) -> None:
    runtime = SiteRuntime(make_config(ASCEND), backend, MemoryJournal(), clock=clock)
    assert runtime.refresh_offers() is None
    assert ascend(runtime) == (16, 14, 14)
    assert runtime.terms() == SiteTerms()
