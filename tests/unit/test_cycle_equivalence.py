"""The fast scheduling cycle (`gateway.scheduler.cyclecache`: verdicts per job shape, shapes that fit nowhere skipped,
placement from numbers) makes exactly the placements of the straightforward cycle it replaced: every job
sorted by `queue_key`, every job judged by `place_in_windows` (`place` over the best-fit windows) with
`Scheduling.allows` (the full policy verdict) on every option, site views rebuilt after each dispatch, with the
cycle's reservation, backfill and preemption hooks as they are.
Random federations with rules, residency, quotas of every kind and none, site terms, draining and offline
sites, busy cards and capability requests, over two cycles (the second after more jobs arrive and some cards
come back)."""

from __future__ import annotations

import copy
import gc
import random
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.app.compose import Core, compose
from gateway.app.config import REPO_POLICIES
from gateway.jobs.model import Capability, Job, JobEvent, JobSpec, JobState, Placement, Resources, StackRun, Topology
from gateway.placement.fairshare import dominant_shares, queue_key
from gateway.placement.freeindex import FreeIndex
from gateway.placement.place import place, place_in_windows
from gateway.policy import load_catalogue
from gateway.policy.holder import PolicyHolder
from gateway.scheduler.cyclecache import shape_of
from gateway.scheduler.cycleplan import CyclePlan
from gateway.sites.model import Pool, SiteTerms, SiteView
from gateway.store import open_store

NOW = datetime(2026, 3, 4, 10, 30, tzinfo=UTC)  # a Wednesday morning: the weekday rules apply
CLASSES = ("nvidia-h100", "nvidia-a100", "ascend-910b", "hygon-k100")
POLICY = """\
apiVersion: fedgate.io/v1
kind: Federation
metadata: {name: equivalence}
tenants:
  - name: deepsea-ai
    quota: {concurrent_cards: {"*": 120}}
    projects:
      - name: pretrain
        quota: {concurrent_cards: {nvidia-h100: 40, ascend-910b: 30}}
      - name: distill
        quota: {concurrent_pflops: 20}
  - name: panda-lm
    quota: {share: 0.3}
    projects:
      - name: eval
  - name: free-lab
    projects:
      - name: misc
projects:
  - name: open-moe
    members: [{tenant: deepsea-ai}, {tenant: panda-lm}]
    quota: {concurrent_cards: {"*": 24}}
priority_classes:
  - {name: high, priority: 100}
  - {name: normal, priority: 50, default: true}
  - {name: low, priority: 10, preemptible: true}
sites:
  - {name: s00, region: cn-east}
  - {name: s01, region: cn-north}
  - {name: s02, region: DE}
  - {name: s03, region: DE}
  - {name: s04, region: cn-east}
residency:
  - classification: personal
    allowed: {cn-east: [cn-east, cn-north], DE: [DE]}
rules:
  - name: no-910b-in-de
    effect: deny
    match: {classes: [ascend-910b], regions: [DE]}
    message: no 910b in Germany
  - name: de-needs-review
    effect: require
    match: {tenants: [panda-lm], regions: [DE]}
    require: {labels: [reviewed]}
    message: panda-lm runs in DE after review
  - name: big-low-only
    effect: require
    match: {min_cards: 12}
    require: {priority_classes: [low]}
    message: big jobs run at low priority
"""
TERMS = (
    SiteTerms(max_job_cards=4),
    SiteTerms(tenants=("deepsea-ai",)),
    SiteTerms(image_registries=("registry.example",)),
)
OWNERS = [
    ("deepsea-ai", "pretrain"),
    ("deepsea-ai", "distill"),
    ("panda-lm", "eval"),
    ("deepsea-ai", "open-moe"),
    ("free-lab", "misc"),
]


def _federation(tmp_path: Path) -> Core:
    policy_file = tmp_path / "federation.yaml"
    policy_file.write_text(POLICY, encoding="utf-8")
    catalogue = load_catalogue(REPO_POLICIES / "accelerators.yaml")
    holder = PolicyHolder(policy_file, catalogue, NOW)
    return compose(open_store("sqlite://:memory:"), holder, clock=lambda: NOW)


def _sites(federation: Core, rng: random.Random) -> None:
    for i in range(rng.randint(3, 40)):
        name = f"s{i:02d}"
        federation.registry.connect(name, "test", NOW)
        pools = []
        for cls in rng.sample(CLASSES, rng.randint(1, 3)):
            offered = rng.choice((4, 8, 8, 16, 32))
            free = rng.randint(offered // 2, offered)
            pool = Pool(cls, offered + rng.choice((0, 8)), offered, free, 8)
            if rng.random() < 0.5:  # an agent that reports its nodes: fewer whole ones than the cards would make
                pool = replace(
                    pool, free_nodes=rng.randint(0, free // 8), largest_partial_free=rng.randint(0, min(7, free))
                )
            pools.append(pool)
        terms = rng.choice((None, None, None, *TERMS))
        federation.registry.report(name, pools, True, NOW, terms)
        if rng.random() < 0.1:
            federation.registry.set_draining(name, True)
        if rng.random() < 0.05:
            federation.registry.disconnect(name, federation.registry.get(name).connection_id)


def _spec(rng: random.Random, i: int) -> JobSpec:
    tenant, project = rng.choice(OWNERS)
    if rng.random() < 0.2:  # a capability: several classes, in the catalogue's order
        resources = Resources(capability=Capability(min_memory_gib=rng.choice((48, 64, 80))), cards=rng.randint(1, 8))
    else:
        cards = rng.choice((1, 1, 2, 4, 8, 12, 16))
        nodes = rng.choice([0, 0, 0] + [n for n in (1, 2, 4) if cards % n == 0])  # a stated shape, now and then
        resources = Resources(accelerator_class=rng.choice(CLASSES), cards=cards, nodes=nodes)
    image = rng.choice(("registry.example/train:1", "elsewhere.example/train:1"))
    return JobSpec(
        tenant=tenant,
        project=project,
        resources=resources,
        runs=(StackRun("", image, ("python", "train.py")),),
        name=f"job-{i}",
        labels=(("reviewed", "yes"),) if rng.random() < 0.5 else (),
        priority_class=rng.choice(("", "high", "low", "normal")),
        data_classification=rng.choice(("", "", "personal")),
        data_region=rng.choice(("cn-east", "DE")),
        env=(("RUN", str(i)),),
    )


def _queue(federation: Core, rng: random.Random, count: int, first: int) -> None:
    jobs = []
    for i in range(first, first + count):
        created = NOW - timedelta(minutes=rng.randint(0, 120))  # aging reorders some
        job = Job(f"job-{i:05d}", _spec(rng, i), JobState.QUEUED, created, created, request_id=f"r{i}", owner="t")
        jobs.append((job, JobEvent(job.job_id, JobState.QUEUED, created, 0, "", "admitted")))
    for job, _ in federation.store.create_jobs(jobs):
        federation.book.remember(job)


def _reference_cycle(federation: Core) -> dict[str, Placement]:
    """The cycle as it was written before `gateway.scheduler.cyclecache` (reservations, backfill and preemption holds
    included), decisions only: nothing is dispatched, and the holds are worked out on a copy of the book."""
    book = copy.deepcopy(federation.earmarks)
    queued = book.revisit(list(federation.queue.queued), federation.queue.queued)
    hold = federation.reservation_ledger.kept(federation.usage.holding())
    leases = hold.withhold(federation.usage.leases())
    views: dict[str, SiteView] = {view.name: view for view in federation.registry.views(leases)}
    index = FreeIndex(views.values())
    usage = federation.usage.usage(list(views.values()))
    policy = federation.policy.policy
    shares = dominant_shares(usage, policy)
    queued.sort(
        key=lambda j: queue_key(
            federation.book.active[j],
            federation.scheduler._priority(federation.book.active[j].spec),
            shares,
            policy,
            NOW,
        )
    )
    held = usage.held
    assert isinstance(held, dict)
    holding = federation.usage.holding_by_id()
    plan = CyclePlan(
        book,
        NOW,
        policy,
        views,
        index,
        holding,
        federation.usage.preemptible_holding(policy),
        federation.usage.releases,
        federation.queue.queued,
        federation.book.active,
    )
    chosen: dict[str, Placement] = {}
    for job_id in queued:
        job, classes = federation.book.active[job_id], federation.queue.queued[job_id]
        cards = job.spec.resources.cards
        decision = None
        allows = federation.usage.allows(job.spec, usage)
        if hold.concerns(job.spec):
            if hold.over(job.spec):
                continue
            nodes = job.spec.resources.nodes
            decision = place(
                classes, cards, hold.reserved_views(job.spec, views), hold.allows(job.spec, allows), nodes=nodes
            )
        if decision is None or (decision.placement is None and not job.spec.reservation):
            decision = None
            if index.fits_somewhere(classes, cards):
                decision = place_in_windows(
                    classes, cards, index, views.__getitem__, allows, nodes=job.spec.resources.nodes
                )
            if decision is None or decision.placement is None:
                decision = plan.blocked(job, classes, allows)
        if decision is None or decision.placement is None:
            continue
        placement = decision.placement
        chosen[job_id] = placement
        hold.took(job.spec, placement)
        held[(job.spec.tenant, job.spec.project, placement.accelerator_class)] += cards
        leases[placement.site][placement.accelerator_class] += cards
        plan.placed(job, placement, federation.registry.view(placement.site, leases[placement.site]))
    return chosen


def _dispatched(federation: Core, before: set[str]) -> dict[str, Placement]:
    # Placement decides site, class and cards; the node count the launcher adds follows from them alone
    # (`placed_nodes`, tested in test_placement_nodes), so the comparison leaves it out.
    return {
        job.job_id: replace(job.placements[0], nodes=0)
        for job in federation.book.active.values()
        if job.state == JobState.DISPATCHED and job.job_id not in before
    }


def _finish_some(federation: Core, rng: random.Random) -> None:
    """Some dispatched jobs end, so that the second cycle sees cards come back and usage fall."""
    for job in list(federation.book.active.values()):
        if job.state == JobState.DISPATCHED and rng.random() < 0.3:
            federation.book.transition(job, JobState.SUCCEEDED, "done")


@pytest.mark.parametrize("seed", range(20))
def test_fast_cycle_places_every_job_where_the_straightforward_cycle_would(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    federation = _federation(tmp_path)
    _sites(federation, rng)
    _queue(federation, rng, rng.randint(1, 400), 0)
    state = rng.getstate()
    for cycle in range(2):
        expected = _reference_cycle(federation)
        before = {j.job_id for j in federation.book.active.values() if j.state == JobState.DISPATCHED}
        dispatched = federation.scheduler.schedule()
        got = _dispatched(federation, before)
        assert got == expected, f"seed {seed}, cycle {cycle}"
        assert dispatched == len(expected)
        rng.setstate(state)
        _finish_some(federation, rng)
        _queue(federation, rng, rng.randint(1, 200), 10_000 * (cycle + 1))
        state = rng.getstate()


def test_the_random_federations_do_exercise_refusals_and_full_sites(tmp_path: Path) -> None:
    """A guard on the test above: its inputs leave jobs waiting for many reasons, not only for room."""
    seen: dict[str, int] = defaultdict(int)
    for seed in range(10):
        rng = random.Random(seed)
        federation = _federation(tmp_path)
        _sites(federation, rng)
        _queue(federation, rng, 300, 0)
        federation.scheduler.schedule()
        snapshot = federation.outlook.snapshot()
        for job in list(federation.book.active.values()):
            if job.state == JobState.QUEUED:
                for reason in federation.outlook.with_pending_reasons(job, snapshot).reasons:
                    seen[reason.code] += 1
    for code in ("QUOTA", "RULE_DENY", "RULE_REQUIRE", "RESIDENCY", "SITE_TERMS", "NO_FREE_CAPACITY"):
        assert seen[code] > 0, f"no job ever waited for {code}: {dict(seen)}"


def test_jobs_differing_only_in_name_environment_or_command_share_a_shape() -> None:
    rng = random.Random(3)
    spec = _spec(rng, 1)
    classes = ("nvidia-h100",)
    same = replace(spec, name="other", env=(("X", "1"),), runs=(replace(spec.runs[0], command=("true",)),))
    assert shape_of(same, classes) == shape_of(spec, classes)
    for different in (
        replace(spec, labels=(("reviewed", "no"),)),
        replace(spec, priority_class="high" if spec.priority_class != "high" else "low"),
        replace(spec, runs=(replace(spec.runs[0], image="elsewhere.example/other:2"),)),
        replace(spec, data_region="NO"),
        replace(spec, topology=Topology(max_sites=2)),
    ):
        assert shape_of(different, classes) != shape_of(spec, classes)
    assert shape_of(spec, ("nvidia-a100",)) != shape_of(spec, classes)


def test_a_cycle_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path) -> None:
    federation = _federation(tmp_path)
    _sites(federation, random.Random(1))
    _queue(federation, random.Random(1), 50, 0)
    assert gc.isenabled()
    federation.scheduler.schedule()
    assert gc.isenabled()
    gc.disable()
    try:
        _queue(federation, random.Random(2), 50, 100)
        federation.scheduler.schedule()
        assert not gc.isenabled()  # paused by someone else: the cycle does not turn it back on
    finally:
        gc.enable()
