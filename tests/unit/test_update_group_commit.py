"""Site job updates through group commit: the updates handed in while a commit is in flight, from any site, are
written in one transaction off the event loop and answered only once it is durable; per-job order, replays and
a failing store behave as the agent protocol says (site.proto, rules 6 and 7). A real core over SQLite, the
real Dispatcher, no gRPC; the store is wrapped only to count its transactions or to fail one."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable
from datetime import timedelta
from typing import Any

import pytest

from gateway.errors import GatewayError, NotLeader, PermissionDenied, StoreFull, StoreUnavailable
from gateway.identity.principal import Principal
from gateway.jobs.model import Job, JobState
from gateway.policy.quotas import period_start
from gateway.sites.dispatcher import SiteUpdate
from tests.unit.schedworld import START, World


class Transactions:
    """Wraps the store's `save_transitions`: counts the transactions and what each carried; can fail the next
    one, or hold it in its thread until released."""

    def __init__(self, world: World) -> None:
        self.store = world.fed.store
        self.original: Callable[..., Any] = self.store.save_transitions
        self.batches: list[list[tuple[str, JobState]]] = []
        self.fail_next: Exception | None = None
        self.hold: threading.Event | None = None
        self.held = threading.Event()  # set once a write waits on `hold`
        self.hold_after = False  # hold once the transaction is durable, not before it
        self.store.save_transitions = self.save  # type: ignore[method-assign]

    def save(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
        if self.hold is not None and not self.hold_after:
            self.held.set()
            self.hold.wait(10)
        if self.fail_next is not None:
            failure, self.fail_next = self.fail_next, None
            raise failure
        result = self.original(batch, *args, **kwargs)
        if self.hold is not None and self.hold_after:
            self.held.set()
            self.hold.wait(10)
        self.batches.append([(job.job_id, job.state) for job, _, _ in batch])
        return result


def dispatched(world: World, *sites: str) -> list[Job]:
    """One job dispatched to each of `sites` (each with 8 cards)."""
    for site in sites:
        world.site(site, 8)
    job_ids = [world.submit(8) for _ in sites]
    world.cycle()
    jobs = [world.job(job_id) for job_id in job_ids]
    assert all(job.state == JobState.DISPATCHED for job in jobs)
    return jobs


def said(world: World, job: Job, state: JobState, sequence: int) -> tuple[str, SiteUpdate]:
    return job.placements[0].site, SiteUpdate(job.job_id, job.epoch, state, sequence, world.now)


def assert_memory_is_the_store(world: World, *jobs: Job) -> None:
    for job in jobs:
        stored = world.fed.store.get_job(job.job_id)
        assert stored is not None
        assert world.fed.book.active.get(job.job_id, stored) == stored


async def test_updates_from_several_sites_are_written_in_one_transaction() -> None:
    world = World()
    jobs = dispatched(world, "a", "b", "c")
    saved = Transactions(world)
    answers = [world.dispatcher.submit(*said(world, job, JobState.RUNNING, 1)) for job in jobs]
    assert not any(answer.done() for answer in answers)  # nothing is answered before its commit
    assert await asyncio.gather(*answers) == [None, None, None]
    assert saved.batches == [[(job.job_id, JobState.RUNNING) for job in jobs]]
    assert [world.state(job.job_id) for job in jobs] == [JobState.RUNNING] * 3
    assert_memory_is_the_store(world, *jobs)
    assert {site: world.fed.store.site_cursor(site) for site in "abc"} == {"a": 1, "b": 1, "c": 1}


async def test_two_updates_of_one_job_in_one_batch_apply_in_arrival_order() -> None:
    world = World()
    (job,) = dispatched(world, "a")
    saved = Transactions(world)
    running = world.dispatcher.submit(*said(world, job, JobState.RUNNING, 1))
    ended = world.dispatcher.submit(*said(world, job, JobState.SUCCEEDED, 2))
    assert list(await asyncio.gather(running, ended)) == [None, None]
    assert saved.batches == [[(job.job_id, JobState.RUNNING), (job.job_id, JobState.SUCCEEDED)]]
    states = [event.state for event in world.fed.store.events(job.job_id)]
    assert states[-2:] == [JobState.RUNNING, JobState.SUCCEEDED]
    assert world.state(job.job_id) == JobState.SUCCEEDED and job.job_id not in world.fed.book.active
    assert world.job(job.job_id).start_time is not None  # the end kept what the RUNNING before it set


async def test_a_replay_is_answered_and_changes_nothing_in_the_same_batch_or_a_later_one() -> None:
    world = World()
    (job,) = dispatched(world, "a")
    saved = Transactions(world)
    first = world.dispatcher.submit(*said(world, job, JobState.RUNNING, 1))
    again = world.dispatcher.submit(*said(world, job, JobState.RUNNING, 1))  # a reconnect's replay, same window
    assert list(await asyncio.gather(first, again)) == [None, None]
    events = world.fed.store.events(job.job_id)
    assert await world.dispatcher.submit(*said(world, job, JobState.RUNNING, 1)) is None  # a later replay
    assert world.fed.store.events(job.job_id) == events
    assert [state for batch in saved.batches for _, state in batch] == [JobState.RUNNING]
    assert world.fed.store.site_cursor("a") == 1
    assert_memory_is_the_store(world, job)


async def test_a_refused_update_does_not_hold_back_the_rest_of_its_batch() -> None:
    world = World()
    job_a, job_b = dispatched(world, "a", "b")
    _, wrong = said(world, job_b, JobState.RUNNING, 1)
    refused = world.dispatcher.submit("a", wrong)  # site a speaks of b's job
    applied = world.dispatcher.submit(*said(world, job_a, JobState.RUNNING, 1))
    with pytest.raises(PermissionDenied):
        await refused
    assert await applied is None
    assert world.state(job_a.job_id) == JobState.RUNNING and world.state(job_b.job_id) == JobState.DISPATCHED
    assert_memory_is_the_store(world, job_a, job_b)


@pytest.mark.parametrize(
    "failure",
    [StoreUnavailable("disk I/O error"), StoreFull("database or disk is full"), NotLeader("epoch 3 was taken over")],
    ids=["store unavailable", "disk full", "deposed leader"],
)
async def test_a_failing_commit_answers_none_of_its_batch_and_leaves_memory_as_the_store(failure: GatewayError) -> None:
    world = World()
    jobs = dispatched(world, "a", "b")
    saved = Transactions(world)
    saved.fail_next = failure  # the whole transaction is refused (PostgreSQL's fence refuses a deposed leader's)
    answers = [world.dispatcher.submit(*said(world, job, JobState.RUNNING, n)) for n, job in enumerate(jobs, 1)]
    results = await asyncio.gather(*answers, return_exceptions=True)
    assert all(result is failure for result in results)
    assert [world.fed.book.active[job.job_id].state for job in jobs] == [JobState.DISPATCHED] * 2
    assert_memory_is_the_store(world, *jobs)
    assert world.fed.store.site_cursor("a") == 0 and world.fed.store.site_cursor("b") == 0
    # The agents send them again on their next streams: applied once, as if the failure had not been.
    again = [world.dispatcher.submit(*said(world, job, JobState.RUNNING, n)) for n, job in enumerate(jobs, 1)]
    assert await asyncio.gather(*again) == [None, None]
    assert [world.state(job.job_id) for job in jobs] == [JobState.RUNNING] * 2
    assert_memory_is_the_store(world, *jobs)


async def test_a_change_made_at_once_waits_for_the_grouped_write_of_its_job_and_builds_on_it() -> None:
    world = World()
    (job,) = dispatched(world, "a")
    saved = Transactions(world)
    saved.hold = threading.Event()
    running = world.dispatcher.submit(*said(world, job, JobState.RUNNING, 1))
    assert await asyncio.to_thread(saved.held.wait, 10)  # the RUNNING is in the writer thread, held there
    threading.Timer(0.05, saved.hold.set).start()
    cancelled = world.fed.book.transition(world.fed.book.active[job.job_id], JobState.CANCELLED, "by the user")
    assert cancelled.state == JobState.CANCELLED and cancelled.start_time is not None  # built on the RUNNING
    assert await running is None
    states = [event.state for event in world.fed.store.events(job.job_id)]
    assert states[-2:] == [JobState.RUNNING, JobState.CANCELLED]
    assert world.state(job.job_id) == JobState.CANCELLED and job.job_id not in world.fed.book.active


async def test_a_watch_that_reads_an_end_the_book_has_not_yet_remembered_sends_the_ended_job() -> None:
    world = World()
    (job,) = dispatched(world, "a")
    saved = Transactions(world)
    saved.hold, saved.hold_after = threading.Event(), True
    running = world.dispatcher.submit(*said(world, job, JobState.RUNNING, 1))
    ended = world.dispatcher.submit(*said(world, job, JobState.SUCCEEDED, 2))
    assert await asyncio.to_thread(saved.held.wait, 10)  # durable in the store, not yet remembered by the book
    assert world.fed.book.active[job.job_id].state == JobState.DISPATCHED
    watch = world.fed.jobs.watch_job(Principal.admin("demo", "root"), job.job_id)
    assert isinstance(watch, AsyncGenerator)
    first = await anext(watch)
    assert first.event.state == JobState.SUCCEEDED and first.job.state == JobState.SUCCEEDED
    saved.hold.set()
    assert list(await asyncio.gather(running, ended)) == [None, None]
    await watch.aclose()


async def test_a_period_read_between_a_durable_end_and_its_announcement_counts_the_attempt_once() -> None:
    """Live usage reads a period's ended card-hours from the store when the period turns, then adds each attempt
    the book announces as ended. An end committed in the writer thread but not yet announced on the loop is in
    such a read: it must not be added again when it is announced (a quota would count it twice till the next
    period)."""
    world = World()
    [job] = dispatched(world, "a")
    await world.dispatcher.submit(*said(world, job, JobState.RUNNING, 1))
    usage = world.fed.usage
    usage.usage()  # the day, week and month read now, on the first day
    world.now = world.now.replace(hour=23, minute=0) + timedelta(hours=1, minutes=5)  # the next day, 00:05
    assert world.now.day != START.day and world.now.weekday() != 0 and world.now.day != 1  # only the day turns
    saved = Transactions(world)
    saved.hold, saved.hold_after = threading.Event(), True
    answer = world.dispatcher.submit(*said(world, job, JobState.SUCCEEDED, 2))
    assert await asyncio.to_thread(saved.held.wait, 10)  # the end is durable; its announcement waits for the loop
    threading.Timer(0.2, saved.hold.set).start()  # the write returns while the loop is in the read below
    day_start = world.now.replace(hour=0, minute=0, second=0, microsecond=0)
    scope = (job.spec.tenant, job.spec.project, "day")
    usage.usage()  # the day turned: read between the writes, so the durable end is in it
    await answer  # now announced, and not added to the day again
    stored = world.fed.store.card_hours_since(day_start)[(job.spec.tenant, job.spec.project)]
    assert stored > 0 and usage.usage().card_hours[scope] == pytest.approx(stored)
    for period in ("week", "month"):  # read before the end: the announcement adds it there
        since = period_start(period, world.now)
        assert usage.usage().card_hours[(job.spec.tenant, job.spec.project, period)] == pytest.approx(
            world.fed.store.card_hours_since(since)[(job.spec.tenant, job.spec.project)]
        )
