"""Backfill: the head of a class's queue holds a reservation; later jobs run only if they cannot delay it."""

from __future__ import annotations

from datetime import timedelta

from gateway.jobs.model import JobState
from gateway.placement.backfill import END_SLACK, Release, earliest_start, latest_end
from tests.unit.schedworld import START, World

HOUR = timedelta(hours=1)


# ---- the arithmetic of one pool ----------------------------------------------------------------------------------
def test_the_earliest_start_is_when_enough_running_jobs_have_ended() -> None:
    releases = [Release(START + 3 * HOUR, 2), Release(START + HOUR, 4)]
    assert earliest_start(6, 2, releases, START) == (START + HOUR, 0)
    assert earliest_start(5, 2, releases, START) == (START + HOUR, 1)
    assert earliest_start(8, 2, releases, START) == (START + 3 * HOUR, 0)
    assert earliest_start(9, 2, releases, START) is None
    assert earliest_start(2, 2, releases, START) == (START, 0)


def test_a_job_without_a_max_runtime_is_taken_to_run_for_ever() -> None:
    assert latest_end(START, timedelta(0), START) is None
    assert latest_end(START, HOUR, START + HOUR) == START + HOUR + END_SLACK
    assert latest_end(None, HOUR, START + HOUR) == START + 2 * HOUR + END_SLACK  # dispatched, not yet running
    assert earliest_start(4, 0, [Release(None, 4)], START) is None


# ---- the scheduling cycle ----------------------------------------------------------------------------------------
def running(world: World, cards: int, runtime: timedelta) -> str:
    job_id = world.submit(cards, runtime)
    world.cycle()
    world.start(job_id)
    return job_id


def test_a_short_job_backfills_around_the_head_reservation() -> None:
    world = World()
    world.site("centre-a", 8)
    running(world, 6, 2 * HOUR)
    head = world.submit(8)
    short = world.submit(2, timedelta(minutes=30))
    assert world.cycle() == 1
    assert world.state(short) == JobState.DISPATCHED
    assert world.state(head) == JobState.QUEUED
    until = (START + 2 * HOUR + END_SLACK).isoformat(timespec="seconds")
    assert world.reasons(head)["RESERVATION_HELD"] == (
        f"holds 8 x nvidia-h100 on centre-a from {until}; backfill allowed only around it"
    )
    assert "BACKFILLED" in {r.code for r in world.job(short).reasons}
    assert world.explained(head)["RESERVATION_HELD"] == "capacity"


def test_a_long_job_that_would_delay_the_head_is_held_back() -> None:
    world = World()
    world.site("centre-a", 8)
    running(world, 6, 2 * HOUR)
    head = world.submit(8)
    long = world.submit(2, 3 * HOUR)
    world.cycle()
    assert world.state(long) == JobState.QUEUED
    behind = world.reasons(long)["BEHIND_RESERVATION"]
    assert "reserved for a larger waiting job" in behind and "maxRuntime ends before then" in behind
    assert head not in behind
    assert world.explained(long)["BEHIND_RESERVATION"] == "capacity"
    world.cancel(head)  # without the reservation, the cards are its to take
    world.cycle()
    assert world.state(long) == JobState.DISPATCHED


def test_a_long_job_may_use_the_cards_the_reservation_leaves_over() -> None:
    world = World()
    world.site("centre-a", 8)
    running(world, 6, 2 * HOUR)
    head = world.submit(6)  # at the reservation's start 8 are free: 2 spare
    long = world.submit(2, 3 * HOUR)
    world.cycle()
    assert world.state(long) == JobState.DISPATCHED
    assert world.state(head) == JobState.QUEUED


def test_the_head_is_not_starved_by_a_stream_of_small_jobs() -> None:
    world = World()
    world.site("centre-a", 8)
    small = []
    for _ in range(8):  # the site is full of 1-card jobs started five minutes apart
        small.append(running(world, 1, HOUR))
        world.now += timedelta(minutes=5)
    head = world.submit(8)
    later: list[str] = []
    for _ in range(40):  # every 5 minutes: jobs past their max runtime end, two more 1-card jobs arrive
        if world.state(head) != JobState.QUEUED:
            break
        world.now += timedelta(minutes=5)
        for job_id in small + later:
            job = world.job(job_id)
            if job.state == JobState.RUNNING and job.start_time and world.now >= job.start_time + HOUR:
                world.report(job_id, JobState.SUCCEEDED)
        later += [world.submit(1), world.submit(1)]
        world.cycle()
        assert all(world.state(j) == JobState.QUEUED for j in later), "a later job took the head's cards"
    assert world.state(head) == JobState.DISPATCHED
    assert world.now <= START + timedelta(minutes=40) + HOUR + END_SLACK  # the last of the 8 ended then


def test_one_reservation_per_class_in_queue_order() -> None:
    world = World()
    world.site("centre-a", 8)
    world.site("centre-b", 4, cls="ascend-910b")
    running(world, 6, 2 * HOUR)
    first, second = world.submit(8), world.submit(7)
    ascend_job = world.submit(4, cls="ascend-910b")
    ascend_runner = world.job(ascend_job)
    world.cycle()
    assert world.state(ascend_job) == JobState.DISPATCHED, ascend_runner.reasons  # another class, not held up
    world.start(ascend_job)
    ascend_head = world.submit(4, cls="ascend-910b")
    world.cycle()
    assert "RESERVATION_HELD" in world.reasons(first)
    assert "RESERVATION_HELD" not in world.reasons(second)
    assert "reserved for a larger waiting job" in world.reasons(second)["BEHIND_RESERVATION"]
    assert "on centre-b" in world.reasons(ascend_head)["RESERVATION_HELD"]
