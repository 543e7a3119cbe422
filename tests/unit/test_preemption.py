"""Preemption: a more urgent job stops the fewest preemptible lower-priority cards it needs, and no more."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta
from pathlib import Path

from gateway.app.config import REPO_POLICIES
from gateway.jobs.model import JobState
from gateway.placement.preemption import Victim, select_victims
from gateway.sites.model import SiteTerms
from gateway.sites.registry import LaunchCommand, PreemptCommand
from tests.unit.schedworld import START, World

HOUR = timedelta(hours=1)


def victim(name: str, cards: int, priority: int = 10, age_min: int = 0) -> Victim:
    return Victim(name, cards, priority, START - timedelta(minutes=age_min))


def names(chosen: tuple[Victim, ...] | None) -> set[str]:
    assert chosen is not None
    return {v.job_id for v in chosen}


# ---- choosing victims on one pool --------------------------------------------------------------------------------
def test_the_fewest_cards_beyond_the_need_are_taken() -> None:
    candidates = [victim("four", 4), victim("two", 2), victim("one", 1), victim("other-two", 2, age_min=5)]
    assert names(select_victims(3, candidates)) == {"two", "one"}  # 3 exactly, not 4


def test_lower_priorities_go_before_higher_ones() -> None:
    candidates = [victim("urgent-ish", 2, priority=20), victim("batch", 2, priority=10)]
    assert names(select_victims(2, candidates)) == {"batch"}
    # The highest priority touched is what counts: one job of 10 beats a job of 5 plus one of 20.
    mixed = [victim("five", 1, priority=5), victim("twenty", 1, priority=20), victim("ten", 2, priority=10)]
    assert names(select_victims(2, mixed)) == {"ten"}


def test_the_youngest_goes_first_among_equals() -> None:
    candidates = [victim("old", 2, age_min=60), victim("young", 2, age_min=1)]
    assert names(select_victims(2, candidates)) == {"young"}


def test_nothing_is_preempted_when_even_all_would_not_be_enough() -> None:
    assert select_victims(5, [victim("a", 2), victim("b", 2)]) is None
    assert select_victims(0, [victim("a", 2)]) == ()


def test_the_chosen_set_is_the_smallest_sufficient_and_none_of_it_could_be_spared() -> None:
    rng = random.Random(7)
    for _ in range(300):
        candidates = [victim(f"v{i}", rng.choice((1, 2, 4, 8)), rng.choice((5, 10))) for i in range(rng.randint(1, 7))]
        need = rng.randint(1, 20)
        totals = [
            sum(v.cards for v in subset)
            for size in range(1, len(candidates) + 1)
            for subset in itertools.combinations(candidates, size)
        ]
        enough = [t for t in totals if t >= need]
        chosen = select_victims(need, candidates)
        if not enough:
            assert chosen is None
            continue
        assert chosen is not None
        assert sum(v.cards for v in chosen) == min(enough)
        assert all(sum(v.cards for v in chosen) - v.cards < need for v in chosen)


# ---- the scheduling cycle ----------------------------------------------------------------------------------------
def running(world: World, cards: int, priority: str = "low", tenant: str = "deepsea-ai/llama-sft") -> str:
    job_id = world.submit(cards, HOUR, priority, tenant=tenant)
    world.cycle()
    world.start(job_id)
    world.now += timedelta(minutes=1)  # each started a minute after the last: the later, the younger
    return job_id


def preempted(world: World, site: str = "centre-a") -> dict[str, int]:
    return {c.job_id: c.grace_s for c in world.commands(site) if isinstance(c, PreemptCommand)}


def test_a_high_job_preempts_the_fewest_low_cards_it_needs() -> None:
    world = World()
    world.site("centre-a", 8)
    four, two, one_old, one_young = running(world, 4), running(world, 2), running(world, 1), running(world, 1)
    world.commands("centre-a")
    urgent = world.submit(3, priority="high")
    world.cycle()
    assert preempted(world) == {two: 30, one_young: 30}  # 3 cards exactly; the younger 1-card job
    assert world.state(urgent) == JobState.QUEUED
    waiting = world.reasons(urgent)["WAITING_FOR_PREEMPTION"]
    assert "preempting 2 lower-priority job(s)" in waiting and "3 x nvidia-h100 are held for it" in waiting
    assert two not in waiting and one_young not in waiting  # other jobs are counted, never named
    assert world.explained(urgent)["WAITING_FOR_PREEMPTION"] == "dispatch"
    assert {world.state(j) for j in (four, two, one_old, one_young)} == {JobState.RUNNING}  # until they stop


def test_only_preemptible_jobs_of_lower_priority_are_preempted() -> None:
    world = World()
    world.site("centre-a", 8)
    running(world, 4, priority="normal")  # not preemptible
    running(world, 4, priority="low")
    world.commands("centre-a")
    too_big = world.submit(8, priority="high")  # the 4 preemptible cards would not be enough
    world.cycle()
    assert preempted(world) == {}
    assert "WAITING_FOR_PREEMPTION" not in world.reasons(too_big)
    world.cancel(too_big)
    peer = world.submit(4, priority="low")  # the same priority never preempts
    world.cycle()
    assert preempted(world) == {}
    assert world.state(peer) == JobState.QUEUED


def test_the_freed_cards_are_held_for_the_preemptor_until_it_is_dispatched() -> None:
    world = World()
    world.site("centre-a", 8)
    first, second = running(world, 4), running(world, 4)
    world.commands("centre-a")
    urgent = world.submit(8, priority="high")
    world.cycle()
    assert set(preempted(world)) == {first, second}
    world.report(first, JobState.PREEMPTED)  # 4 cards free, the other victim still stopping
    bystander = world.submit(4, priority="normal")
    world.cycle()
    assert world.state(bystander) == JobState.QUEUED
    assert "HELD_FOR_PREEMPTOR" in world.reasons(bystander)
    world.report(second, JobState.PREEMPTED)
    world.cycle()
    assert world.state(urgent) == JobState.DISPATCHED
    assert world.state(bystander) == JobState.QUEUED
    requeued = world.job(first)
    assert (requeued.state, requeued.attempt, requeued.epoch) == (JobState.QUEUED, 1, 1)


def test_a_preempted_attempt_counts_in_usage_and_the_next_attempt_has_a_new_epoch() -> None:
    world = World()
    world.site("centre-a", 8)
    low = running(world, 8)
    world.now = START + 2 * HOUR
    urgent = world.submit(8, priority="high", runtime=timedelta(minutes=10))
    world.cycle()
    world.report(low, JobState.PREEMPTED)
    rows = world.fed.store.usage_between(START, world.now + HOUR)
    assert [(t, p, h, n) for t, p, _, h, n in rows] == [("deepsea-ai", "llama-sft", 16.0, 1)]  # 8 cards x 2 h
    world.cycle()
    world.start(urgent)
    world.report(urgent, JobState.SUCCEEDED)
    world.cycle()
    again = world.job(low)
    assert (again.state, again.attempt, again.epoch, again.start_time) == (JobState.DISPATCHED, 2, 2, None)


def test_a_job_is_not_preempted_again_within_its_grace() -> None:
    world = World()
    world.site("centre-a", 8)
    low = running(world, 8)
    first = world.submit(8, priority="high")
    world.cycle()
    world.report(low, JobState.PREEMPTED)
    world.cycle()
    world.start(first)
    world.report(first, JobState.SUCCEEDED)
    world.cycle()
    world.start(low)  # its second attempt runs from now
    world.commands("centre-a")
    second = world.submit(8, priority="high")
    world.now += timedelta(seconds=20)
    world.cycle()
    assert preempted(world) == {}, "preempted again within its 30 s grace"
    world.now += timedelta(seconds=15)
    world.periodic_cycle()
    assert preempted(world) == {low: 30}
    assert world.state(second) == JobState.QUEUED


def test_the_victims_class_sets_the_grace_and_every_job_is_told_its_own(tmp_path: Path) -> None:
    policy = (REPO_POLICIES / "federation.yaml").read_text()
    policy = policy.replace(
        "{name: low, priority: 10, preemptible: true}",
        "{name: low, priority: 10, preemptible: true, grace_period_s: 5}",
    )
    (tmp_path / "federation.yaml").write_text(policy)
    world = World(tmp_path / "federation.yaml")
    world.site("centre-a", 8)
    low = world.submit(8, priority="low")
    world.cycle()
    (launch,) = [c for c in world.commands("centre-a") if isinstance(c, LaunchCommand)]
    assert dict(launch.env)["FEDGATE_PREEMPT_GRACE_S"] == "5"
    world.start(low)
    world.submit(2, priority="high")
    world.cycle()
    assert preempted(world) == {low: 5}


def test_a_preempted_job_never_preempts_its_preemptor(tmp_path: Path) -> None:
    policy = (REPO_POLICIES / "federation.yaml").read_text()
    classes = "  - {name: a, priority: 20, preemptible: true}\n"
    classes += "  - {name: b, priority: %d, preemptible: true, default: true}\n"
    head = policy[: policy.index("priority_classes:\n")] + "priority_classes:\n"  # the demo file ends with them
    path = tmp_path / "federation.yaml"
    path.write_text(head + classes % 10)
    world = World(path)
    world.site("centre-a", 8)
    victim_id = running(world, 8, priority="b")
    preemptor = world.submit(8, priority="a")
    world.cycle()
    world.report(victim_id, JobState.PREEMPTED)
    world.cycle()
    world.start(preemptor)
    world.commands("centre-a")
    path.write_text(head + classes % 30)
    world.fed.admin.reload_policy()  # b now outranks a, and a is preemptible: only the history stops it
    world.now += HOUR
    world.cycle()
    assert preempted(world) == {}
    assert world.state(victim_id) == JobState.QUEUED


def test_the_preemptor_may_only_preempt_where_it_may_run() -> None:
    world = World()
    world.site("centre-a", 8, terms=SiteTerms(tenants=("panda-lm",)))  # the centre takes panda-lm work only
    running(world, 8, tenant="panda-lm/eval")
    world.commands("centre-a")
    urgent = world.submit(4, priority="high")  # deepsea-ai: refused there, so it must not stop anything there
    world.cycle()
    assert preempted(world) == {}
    assert world.state(urgent) == JobState.QUEUED


def test_preemptions_never_use_up_a_jobs_attempts_but_lost_attempts_do() -> None:
    world = World()
    world.site("centre-a", 8)
    preempted_job = world.submit(8, HOUR, "low")
    for _ in range(4):  # more preemptions than a job may lose attempts
        world.cycle()
        world.start(preempted_job)
        world.report(preempted_job, JobState.PREEMPTED)
        assert world.state(preempted_job) == JobState.QUEUED
    world.cancel(preempted_job)
    lost_job = world.submit(8, HOUR, "low")
    states = []
    for _ in range(3):
        world.cycle()
        world.start(lost_job)
        world.report(lost_job, JobState.LOST)
        states.append(world.state(lost_job))
    assert states == [JobState.QUEUED, JobState.QUEUED, JobState.FAILED]
    assert "gave up after 3 lost attempts" in world.fed.store.events(lost_job)[-1].message
