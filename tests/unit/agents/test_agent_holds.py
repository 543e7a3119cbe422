"""Gang-part holds at the agent: a Reserve judged by the centre's terms and free capacity holds devices until a
Commit and the Launch of that epoch consume them, an Abort or Cancel releases them, or they time out."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from agents.core.commands import Abort, Cancel, Commit, Launch, Reserve
from agents.core.model import JobState, PoolSpec
from agents.core.runtime import SiteRuntime
from agents.journal.base import MemoryJournal
from agents.policy.terms import SitePolicy

from .fakes import FakeBackend
from .test_agent_runtime import make_config
from .test_agent_runtime_terms import WEDNESDAY_DAY, Clock

ASCEND = PoolSpec("ascend-910b", cards=16, offered=8, cards_per_node=8)
POLICY = SitePolicy(tenants=("deepsea-ai",), image_registries=("registry.example.org",))
IMAGE = "registry.example.org/deepsea/train:1"


@pytest.fixture
def clock() -> Clock:
    return Clock(WEDNESDAY_DAY)


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def runtime(backend: FakeBackend, clock: Clock) -> SiteRuntime:
    return SiteRuntime(replace(make_config(ASCEND), policy=POLICY), backend, MemoryJournal(), clock=clock)


def reserve(rid: str = "gang:j1:1:0", cards: int = 6, tenant: str = "deepsea-ai", timeout_s: float = 5.0) -> Reserve:
    return Reserve(rid, "j1", "ascend-910b", cards, timeout_s, tenant, "llm", image=IMAGE, epoch=1)


def launch(job: str = "j1", epoch: int = 1, cards: int = 6) -> Launch:
    return Launch(job, epoch, 1, "ascend-910b", cards, ("x",), tenant="deepsea-ai", project="llm", image=IMAGE)


def free(runtime: SiteRuntime) -> int:
    (pool,) = runtime.capacity()
    return pool.free


async def test_an_accepted_reserve_holds_the_cards_and_says_what_is_left(runtime: SiteRuntime) -> None:
    reply = await runtime.handle(reserve())
    assert reply is not None and reply.accepted and reply.free == 2
    assert free(runtime) == 2


async def test_a_reserve_the_centre_refuses_names_its_term_and_holds_nothing(runtime: SiteRuntime) -> None:
    reply = await runtime.handle(reserve(tenant="panda-lm"))
    assert reply is not None and not reply.accepted
    assert reply.reason == "site policy: tenant panda-lm is not accepted here"
    assert free(runtime) == 8


async def test_a_reserve_for_an_image_from_another_registry_is_refused_naming_the_term(runtime: SiteRuntime) -> None:
    reply = await runtime.handle(replace(reserve(), image="docker.io/someone/train:1"))
    assert reply is not None and not reply.accepted
    assert reply.reason.startswith("site policy: image docker.io/someone/train:1 is not from an allowed registry")
    assert free(runtime) == 8


async def test_a_reserve_beyond_free_cards_is_refused_counting_other_holds(runtime: SiteRuntime) -> None:
    await runtime.handle(reserve("gang:j0:1:0", cards=5))
    reply = await runtime.handle(reserve(cards=4))
    assert reply is not None and not reply.accepted and "3 of the 8 offered are free" in reply.reason
    assert free(runtime) == 3


async def test_a_draining_site_refuses_to_hold(runtime: SiteRuntime) -> None:
    runtime.drain(True)
    reply = await runtime.handle(reserve())
    assert reply is not None and not reply.accepted and reply.reason == "site is draining"


async def test_abort_releases_the_hold(runtime: SiteRuntime) -> None:
    await runtime.handle(reserve())
    await runtime.handle(Abort("gang:j1:1:0", "another site refused"))
    assert free(runtime) == 8


async def test_cancel_of_the_attempt_releases_its_hold(runtime: SiteRuntime) -> None:
    await runtime.handle(reserve())
    await runtime.handle(Cancel("j1", 1, "cancelled by its owner"))
    assert free(runtime) == 8


async def test_a_hold_without_commit_or_abort_expires_by_itself(runtime: SiteRuntime, clock: Clock) -> None:
    await runtime.handle(reserve(timeout_s=5))
    clock.now = WEDNESDAY_DAY + timedelta(seconds=4)
    assert runtime.refresh_offers() == pytest.approx(1.0)  # wakes when the hold expires
    assert free(runtime) == 2
    version = runtime.capacity_version
    clock.now = WEDNESDAY_DAY + timedelta(seconds=5)
    runtime.refresh_offers()
    assert free(runtime) == 8 and runtime.capacity_version > version


async def test_commit_keeps_the_hold_until_the_launch_of_that_epoch_consumes_it(
    runtime: SiteRuntime, clock: Clock, backend: FakeBackend
) -> None:
    await runtime.handle(reserve())
    clock.now = WEDNESDAY_DAY + timedelta(seconds=4)
    await runtime.handle(Commit("gang:j1:1:0"))
    clock.now = WEDNESDAY_DAY + timedelta(seconds=6)  # past the first timeout: the commit extended it
    runtime.refresh_offers()
    assert free(runtime) == 2
    # Another job cannot take the held cards meanwhile.
    await runtime.handle(launch("other", cards=4))
    assert runtime.unacknowledged_updates()[-1].lease_returned
    await runtime.handle(launch())
    update = runtime.unacknowledged_updates()[-1]
    assert (update.job_id, update.state, len(update.device_indices)) == ("j1", JobState.RUNNING, 6)
    assert free(runtime) == 2
    clock.now = WEDNESDAY_DAY + timedelta(minutes=5)  # the hold is gone: nothing expires under the running job
    runtime.refresh_offers()
    assert free(runtime) == 2


async def test_a_repeated_reserve_is_answered_again_without_holding_twice(runtime: SiteRuntime) -> None:
    await runtime.handle(reserve())
    reply = await runtime.handle(reserve())
    assert reply is not None and reply.accepted and free(runtime) == 2


async def test_holds_do_not_outlive_a_clock_standing_still(runtime: SiteRuntime, clock: Clock) -> None:
    await runtime.handle(reserve(timeout_s=0))  # no timeout from the gateway: the agent's default applies
    clock.now = WEDNESDAY_DAY + timedelta(seconds=11)
    runtime.refresh_offers()
    assert free(runtime) == 8


async def test_a_multi_node_parts_hold_takes_whole_nodes_or_is_refused_naming_them(
    backend: FakeBackend, clock: Clock
) -> None:
    two_nodes = replace(ASCEND, offered=16)
    runtime = SiteRuntime(replace(make_config(two_nodes), policy=POLICY), backend, MemoryJournal(), clock=clock)
    await runtime.handle(reserve("gang:j0:1:0", cards=1))  # a 1-card hold spoils one of the two nodes
    reply = await runtime.handle(replace(reserve("gang:j1:1:0", cards=8), nodes=2))
    assert reply is not None and not reply.accepted and "2 whole free nodes" in reply.reason
    await runtime.handle(Abort("gang:j0:1:0", "test"))
    reply = await runtime.handle(replace(reserve("gang:j1:1:0", cards=8), nodes=2))
    assert reply is not None and reply.accepted
    (pool,) = runtime.capacity()
    assert (pool.free, pool.free_nodes, pool.largest_partial_free) == (8, 0, 4)  # 4 held on each node
