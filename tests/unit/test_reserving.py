"""The two-phase gang coordinator, driven with a hand-moved clock and fake sites: sites are asked one at a
time; all held means Commit, DISPATCHED and Launch everywhere with one epoch; any refusal, timeout or
disconnect releases every hold and queues the job again with the site's word."""

from __future__ import annotations

from itertools import pairwise

from gateway.app.compose import compose
from gateway.gangs.coordinator import RESERVE_TIMEOUT, SITE_BACKOFF, SITE_BACKOFF_CAP, parse_hold_id
from gateway.jobs.model import JobState
from gateway.sites.dispatcher import SiteUpdate
from gateway.sites.registry import CancelCommand, ReserveCommand

from .gangworld import ALICE, FakeSite, GangWorld


def world(*sites: FakeSite) -> GangWorld:
    return GangWorld(list(sites) or [FakeSite("a", 8), FakeSite("b", 8)])


def pending(w: GangWorld, name: str) -> list[object]:
    queue = w.sessions[name].outbox
    return [item[1] for item in list(queue._queue) if item is not None]  # type: ignore[attr-defined]


async def test_sites_are_asked_one_at_a_time_then_committed_and_launched_with_one_epoch() -> None:
    w = world()
    job = await w.submit(12)
    w.fed.scheduler.schedule()
    assert w.state(job.job_id) is JobState.RESERVING
    asked = {name: [c for c in pending(w, name) if isinstance(c, ReserveCommand)] for name in w.sites}
    assert sorted(len(v) for v in asked.values()) == [0, 1]  # only the first part's site so far
    w.run()
    done = w.job(job.job_id)
    assert done.state is JobState.DISPATCHED and done.attempt == 1
    assert sorted((p.site, p.cards) for p in done.placements) == [("a", 8), ("b", 4)]
    assert {k for s in w.sites.values() for k in s.launched} == {(job.job_id, done.epoch)}
    assert w.holders(job.job_id) == {}  # the launches consumed the holds


async def test_while_reserving_the_parts_count_as_leased_so_nothing_else_takes_them() -> None:
    w = world()
    gang = await w.submit(12)
    w.fed.scheduler.schedule()
    other = await w.submit(6, max_sites=1)
    w.fed.scheduler.schedule()
    assert w.state(gang.job_id) is JobState.RESERVING
    assert w.state(other.job_id) is JobState.QUEUED


async def test_a_refusal_releases_every_hold_and_queues_the_job_with_the_sites_reason() -> None:
    w = world(FakeSite("a", 8), FakeSite("b", 8, refuse="site policy: tenant deepsea-ai is not accepted here"))
    job = await w.submit(12)
    w.run()
    queued = w.job(job.job_id)
    assert queued.state is JobState.QUEUED and queued.placements == ()
    assert w.holders(job.job_id) == {}
    (said,) = [r for r in queued.reasons if r.stage == "site"]
    assert (said.code, said.site) == ("SITE_REFUSED_RESERVE", "b")
    assert "tenant deepsea-ai is not accepted here" in said.message
    # b is backing off for this job: no new Reserve goes there, and the job says why it waits.
    before = len(w.sites["b"].received)
    w.run()
    assert len(w.sites["b"].received) == before and w.state(job.job_id) is JobState.QUEUED
    reasons = {r.code for r in w.fed.outlook.with_pending_reasons(w.job(job.job_id)).reasons}
    assert {"SITE_REFUSED_RESERVE", "SITE_BACKOFF"} <= reasons


async def test_a_site_that_keeps_refusing_is_asked_again_later_each_time_and_at_most_once_a_minute() -> None:
    """The first refusal keeps the site out of the job's plans for a moment only (most refusals are transient: a
    hold a dead leader left, a report a moment old); each further one doubles the wait, up to the cap; a job
    that ends leaves nothing behind."""
    w = world(FakeSite("a", 8), FakeSite("b", 8, refuse="site policy: tenant deepsea-ai is not accepted here"))
    job = await w.submit(12)
    asked_at: list[float] = []
    start = w.clock()
    for _ in range(400):  # 400 half-seconds: 200 s of the hand-moved clock
        before = len([c for c in w.sites["b"].received if isinstance(c, ReserveCommand)])
        w.run()
        if len([c for c in w.sites["b"].received if isinstance(c, ReserveCommand)]) > before:
            asked_at.append((w.clock() - start).total_seconds())
        w.clock.advance(0.5)
    gaps = [later - earlier for earlier, later in pairwise(asked_at)]
    first, cap = SITE_BACKOFF.total_seconds(), SITE_BACKOFF_CAP.total_seconds()
    expected = [min(first * 2**n, cap) for n in range(len(gaps))]
    assert len(gaps) >= 6 and all(e <= g <= e + 1 for g, e in zip(gaps, expected, strict=True)), (gaps, expected)
    assert max(gaps) <= cap + 1
    w.fed.jobs.cancel_job(ALICE, job.job_id)
    w.run()
    assert job.job_id not in w.fed.gangs._failures and job.job_id not in w.fed.gangs._backing_off


async def test_a_site_that_never_answers_times_out_and_every_hold_is_released() -> None:
    w = world(FakeSite("a", 8), FakeSite("b", 8, silent=True))
    job = await w.submit(12)
    w.run()
    assert w.state(job.job_id) is JobState.RESERVING
    w.clock.advance(RESERVE_TIMEOUT.total_seconds() - 1)
    w.run()
    assert w.state(job.job_id) is JobState.RESERVING
    w.clock.advance(1)
    w.run()
    queued = w.job(job.job_id)
    assert queued.state is JobState.QUEUED and w.holders(job.job_id) == {}
    assert any(r.code == "RESERVE_TIMEOUT" and r.site == "b" for r in queued.reasons)


async def test_a_late_acceptance_after_the_timeout_is_aborted() -> None:
    w = world(FakeSite("a", 8), FakeSite("b", 8, silent=True))
    job = await w.submit(12)
    w.run()
    (late,) = [c for c in w.sites["b"].received if isinstance(c, ReserveCommand)]
    w.clock.advance(RESERVE_TIMEOUT.total_seconds())
    w.run()
    w.sites["b"].silent = False
    w.sites["b"].holds[late.reservation_id] = (job.job_id, late.epoch, late.cards)
    w.dispatcher.reserve_reply("b", late.reservation_id, True, "")
    w.run()
    assert w.holders(job.job_id) == {}


async def test_a_site_disconnecting_mid_reservation_counts_as_a_refusal() -> None:
    w = world(FakeSite("a", 8), FakeSite("b", 8, silent=True))
    job = await w.submit(12)
    w.run()
    w.disconnect("b")
    w.run()
    queued = w.job(job.job_id)
    assert queued.state is JobState.QUEUED and w.holders(job.job_id) == {}
    assert any(r.code == "SITE_DISCONNECTED" for r in queued.reasons)


async def test_cancelling_a_reserving_job_releases_its_holds() -> None:
    w = world(FakeSite("a", 8), FakeSite("b", 8, silent=True))
    job = await w.submit(12)
    w.run()
    assert w.holders(job.job_id)
    w.fed.jobs.cancel_job(ALICE, job.job_id)
    w.run()
    assert w.state(job.job_id) is JobState.CANCELLED and w.holders(job.job_id) == {}


async def test_a_restart_while_reserving_queues_the_job_again() -> None:
    w = world(FakeSite("a", 8), FakeSite("b", 8, silent=True))
    job = await w.submit(12)
    w.run()
    restarted = compose(w.store, w.fed.policy, w.clock)
    again = restarted.book.active[job.job_id]
    assert again.state is JobState.QUEUED and again.placements == ()
    assert any(r.code == "RESERVE_INTERRUPTED" for r in again.reasons)


async def test_a_gang_runs_when_every_part_runs_and_succeeds_when_every_part_succeeds() -> None:
    w = world()
    job = await w.submit(12)
    w.run()
    epoch = w.job(job.job_id).epoch
    sequence = iter(range(1, 100))

    def report(site: str, state: JobState) -> None:
        w.dispatcher.update(site, SiteUpdate(job.job_id, epoch, state, next(sequence), w.clock(), device_indices=(0,)))

    report("a", JobState.RUNNING)
    assert w.state(job.job_id) is JobState.DISPATCHED
    report("b", JobState.RUNNING)
    assert w.state(job.job_id) is JobState.RUNNING
    report("a", JobState.SUCCEEDED)
    assert w.state(job.job_id) is JobState.RUNNING
    report("b", JobState.SUCCEEDED)
    assert w.state(job.job_id) is JobState.SUCCEEDED


async def test_a_failing_part_fails_the_attempt_and_cancels_the_other_parts() -> None:
    w = world()
    job = await w.submit(12)
    w.run()
    epoch = w.job(job.job_id).epoch
    w.dispatcher.update("a", SiteUpdate(job.job_id, epoch, JobState.RUNNING, 1, w.clock(), device_indices=(0,)))
    w.dispatcher.update("b", SiteUpdate(job.job_id, epoch, JobState.FAILED, 1, w.clock(), exit_code=3))
    failed = w.job(job.job_id)
    assert failed.state is JobState.FAILED and failed.exit_code == 3
    cancels = [c for c in pending(w, "a") if isinstance(c, CancelCommand)]
    assert [(c.job_id, c.epoch) for c in cancels] == [(job.job_id, epoch)]


def test_reservation_ids_name_job_epoch_and_part() -> None:
    assert parse_hold_id("gang:job-1:7:2") == ("job-1", 7, 2)
    assert parse_hold_id("book:x") is None
    assert parse_hold_id("gang:job-1:x:2") is None


def free_at(w: GangWorld, site: str) -> int:
    (pool,) = w.fed.registry.view(site).pools
    return pool.free


async def test_a_refusal_for_capacity_lowers_the_sites_free_cards_until_its_next_report() -> None:
    w = world()
    w.sites["b"].free = 2  # others took six of b's cards since its last capacity report, which still says 8
    first = await w.submit(12)
    w.run()
    assert w.state(first.job_id) is JobState.QUEUED
    assert free_at(w, "b") == 2  # the refusal's word, not the stale report
    # Another job, for which b is not backing off, is not planned on b's stale 8 cards: b is not asked again.
    asked = len([c for c in w.sites["b"].received if isinstance(c, ReserveCommand)])
    second = await w.submit(12)
    w.run()
    assert w.state(second.job_id) is JobState.QUEUED
    assert len([c for c in w.sites["b"].received if isinstance(c, ReserveCommand)]) == asked
    # b's next capacity report is its word again.
    w.sites["b"].free = 8
    w.report("b")
    assert free_at(w, "b") == 8
    w.run()
    assert JobState.DISPATCHED in {w.state(first.job_id), w.state(second.job_id)}


async def test_a_refusal_never_raises_the_sites_free_cards_above_its_last_report() -> None:
    w = world(FakeSite("a", 8), FakeSite("b", 8, free=4, refuse="site policy: not now"))
    w.sites["b"].free = 8  # what b's refusal will claim: more than it reported
    job = await w.submit(12)
    w.run()
    assert w.state(job.job_id) is JobState.QUEUED
    assert any(isinstance(c, ReserveCommand) for c in w.sites["b"].received)
    assert free_at(w, "b") == 4
