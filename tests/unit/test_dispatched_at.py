"""`JobBook.dispatched_at`, which bounds a usage receipt's times, answers from memory what the store holds."""

from __future__ import annotations

from datetime import datetime

from gateway.jobs.book import JobBook
from gateway.jobs.events import EventBus
from gateway.jobs.model import Job, JobState

from .schedworld import World


def from_the_store(world: World, job: Job) -> datetime | None:
    times = [
        e.time
        for e in world.fed.store.events(job.job_id)
        if e.state == JobState.DISPATCHED and e.attempt == job.attempt
    ]
    return times[-1] if times else None


def test_the_dispatch_time_of_each_attempt_is_the_stored_one_before_and_after_a_restart() -> None:
    world = World()
    world.site("centre-a", 8)
    job_id = world.submit(8)
    assert world.fed.book.dispatched_at(world.job(job_id)) is None  # never dispatched
    world.cycle()
    first = world.job(job_id)
    assert first.state is JobState.DISPATCHED
    assert world.fed.book.dispatched_at(first) == from_the_store(world, first) is not None
    world.now = world.now.replace(minute=30)
    world.fed.book.requeue(world.fed.book.transition(first, JobState.LOST, "site lost"), "site lost")
    world.cycle()
    second = world.job(job_id)
    assert second.attempt == 2 and world.fed.book.dispatched_at(second) == from_the_store(world, second)
    assert world.fed.book.dispatched_at(second) != world.fed.book.dispatched_at(first)
    restarted = JobBook(world.fed.store, lambda: world.now, EventBus())  # nothing in memory: the store answers
    restarted.load()
    assert restarted.dispatched_at(second) == from_the_store(world, second)
