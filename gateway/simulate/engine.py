"""The discrete-event replay: jobs arrive, wait, run and finish on a simulated clock, placed by `place`.

Owns: the simulated clock and the books of free cards per site and class. Events are submits and finishes;
after every instant at which something happened, one scheduling pass looks at the queue in FIFO order
(submit time, then trace order) and starts every job that fits, skipping those that do not (greedy, no
reservations: `Scheduler.schedule` also holds a backfill earmark per class, which this leaves out; for a
trace of one tenant at one priority its order, aged priority then fair share then age, is this FIFO). Where a
job goes is the scheduling cycle's own decision, `gateway.placement.place.place_in_windows` (`place` over the
best-fit windows of a `FreeIndex`), over `SiteView`s built from the books, with no policy; the engine only
narrows which sites the job may see:
- siloed: only its home site;
- federated: every site (the default placement: best fit over all sites, no policy engine);
- pooled: one ideal site holding every card of each class (cards_per_node = the largest): the reference a
  federation is measured against. Under this greedy FIFO (no reservations, no lookahead) it is not a strict
  lower bound: list scheduling has anomalies, and a federated run can come out slightly ahead of it.
A job asking for more cards than any site it may use could ever hold is reported unschedulable, not queued.

What it deliberately leaves out: nodes (a pool's cards are fungible; `cards_per_node` is not enforced),
network and dispatch latency, failures, preemption, priorities and fair share, and gangs across sites. So
it reads the trace's optional columns (issue 17: `tenant`, `project`, `priority_class`, `nodes`,
`max_sites`, `dataset_site`, `dataset_gb`) and ignores them: a job is its submit time, duration, cards,
class and home whatever else the trace says about it. `check_trace` still checks that a `dataset_site` is a
site, so that a trace this engine accepts is one a richer replay can read too.

Cost: the queue is kept per demand (allowed sites, classes, cards), FIFO within each; a pass only looks at
the heads of demands whose sites gained cards or that gained a job, and an index of the largest free block
per class skips demands that cannot fit without calling `place`. Since a pass only ever takes cards, the
earliest fitting head is exactly the job a full FIFO scan would start next.
"""

from __future__ import annotations

import heapq
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from gateway.errors import ConfigError
from gateway.placement.freeindex import FreeIndex
from gateway.placement.place import place_in_windows
from gateway.simulate.sites import PoolSpec, SiteSpec
from gateway.simulate.trace import TraceJob
from gateway.sites.model import Pool, SiteView

Mode = Literal["siloed", "federated", "pooled"]
MODES: tuple[Mode, ...] = ("siloed", "federated", "pooled")
POOLED_SITE = "pooled"
_ALL = "*"  # the group of every site (federated, pooled)


@dataclass(frozen=True)
class JobOutcome:
    """What became of one job. `start_s` is None when it could never run in this mode (`reason` says why)."""

    job: TraceJob
    site: str = ""
    accelerator_class: str = ""
    start_s: float | None = None
    reason: str = ""

    @property
    def scheduled(self) -> bool:
        return self.start_s is not None

    @property
    def wait_s(self) -> float:
        assert self.start_s is not None
        return self.start_s - self.job.submit_s

    @property
    def finish_s(self) -> float:
        assert self.start_s is not None
        return self.start_s + self.job.duration_s


@dataclass(frozen=True)
class SimulationResult:
    mode: Mode
    outcomes: tuple[JobOutcome, ...]  # in FIFO order (submit time, then trace order)
    total_cards: int
    passes: int  # scheduling passes run
    placements: int  # calls to `place`


def check_trace(jobs: Sequence[TraceJob], sites: Sequence[SiteSpec], source: str = "<trace>") -> None:
    """Every job's home, and its dataset's site when it names one, must be one of the sites: a typo would
    silently make a job unschedulable (or its data nowhere)."""
    names = {s.name for s in sites}
    for job in jobs:
        named = (
            (("home_site", job.home_site), ("dataset_site", job.dataset_site))
            if job.dataset_site
            else (("home_site", job.home_site),)
        )
        for column, site in named:
            if site not in names:
                raise ConfigError(
                    f"{source}:{job.line}: {column} {site!r} is not in the sites file"
                    f" (sites: {', '.join(sorted(names))}); fix the name or add the site",
                    metadata={"file": source, "line": str(job.line)},
                )


def layout(sites: Sequence[SiteSpec], mode: Mode) -> tuple[SiteSpec, ...]:
    """The sites a mode places on: as given, or (pooled) one site with every card of each class."""
    if mode != "pooled":
        return tuple(sites)
    cards: dict[str, int] = defaultdict(int)
    per_node: dict[str, int] = defaultdict(int)
    for site in sites:
        for pool in site.pools:
            cards[pool.accelerator_class] += pool.cards
            per_node[pool.accelerator_class] = max(per_node[pool.accelerator_class], pool.cards_per_node)
    pools = tuple(PoolSpec(cls, cards[cls], per_node[cls]) for cls in sorted(cards))
    return (SiteSpec(POOLED_SITE, "", pools),)


Demand = tuple[str, tuple[str, ...], int]  # (group of allowed sites, classes, cards)


class _Books:
    """Free cards per site and class, SiteViews built from them, and the largest free block per group."""

    def __init__(self, sites: Sequence[SiteSpec], mode: Mode) -> None:
        self.specs = {s.name: s for s in sites}
        self.free = {s.name: {p.accelerator_class: p.cards for p in s.pools} for s in sites}
        self.group_of = {s.name: (s.name if mode == "siloed" else _ALL) for s in sites}
        self.members: dict[str, list[str]] = defaultdict(list)
        for site in sites:
            self.members[self.group_of[site.name]].append(site.name)
        # The most cards of a class any one site of the group holds at all / has free now.
        self.capacity: dict[str, dict[str, int]] = {g: self._largest(m, total=True) for g, m in self.members.items()}
        self.largest: dict[str, dict[str, int]] = {g: self._largest(m, total=False) for g, m in self.members.items()}
        self._views: dict[str, SiteView] = {}
        # The scheduling cycle's own index of free cards, one per group: placement reads its windows.
        self.index = {g: FreeIndex(self._view(name) for name in m) for g, m in self.members.items()}

    def _largest(self, members: list[str], total: bool) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for name in members:
            for pool in self.specs[name].pools:
                count = pool.cards if total else self.free[name][pool.accelerator_class]
                out[pool.accelerator_class] = max(out[pool.accelerator_class], count)
        return out

    def fits(self, demand: Demand) -> bool:
        group, classes, cards = demand
        largest = self.largest[group]
        return any(largest.get(cls, 0) >= cards for cls in classes)

    def could_ever_fit(self, demand: Demand) -> bool:
        group, classes, cards = demand
        capacity = self.capacity[group]
        return any(capacity.get(cls, 0) >= cards for cls in classes)

    def view(self, name: str) -> SiteView:
        return self._view(name)

    def _view(self, name: str) -> SiteView:
        view = self._views.get(name)
        if view is None:
            free = self.free[name]
            # No node shape in the views (cards_per_node 0): the simulator leaves nodes out, so placement
            # judges cards alone, as the module says.
            pools = tuple(
                Pool(p.accelerator_class, p.cards, p.cards, free[p.accelerator_class], 0)
                for p in self.specs[name].pools
            )
            view = self._views[name] = SiteView(name, True, False, pools)
        return view

    def take(self, site: str, cls: str, cards: int) -> None:
        self._change(site, cls, -cards)

    def give(self, site: str, cls: str, cards: int) -> None:
        self._change(site, cls, cards)

    def _change(self, site: str, cls: str, delta: int) -> None:
        self.free[site][cls] += delta
        assert 0 <= self.free[site][cls] <= self.specs[site].cards(cls), (site, cls, self.free[site][cls])
        self._views.pop(site, None)
        group = self.group_of[site]
        self.index[group].update(self._view(site))
        self.largest[group][cls] = max(self.free[name].get(cls, 0) for name in self.members[group])


def simulate(jobs: Sequence[TraceJob], sites: Sequence[SiteSpec], mode: Mode) -> SimulationResult:
    """Replay `jobs` on `sites` in `mode`. Pure and deterministic: the same inputs give the same outcomes."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
    placed_on = layout(sites, mode)
    books = _Books(placed_on, mode)
    every_class = tuple(sorted({p.accelerator_class for s in placed_on for p in s.pools}))
    order = sorted(range(len(jobs)), key=lambda i: (jobs[i].submit_s, i))
    fifo = [jobs[i] for i in order]
    outcomes: list[JobOutcome | None] = [None] * len(fifo)

    def demand_of(job: TraceJob) -> Demand:
        group = books.group_of[job.home_site] if mode == "siloed" else _ALL
        classes = (job.accelerator,) if job.accelerator else every_class
        return group, classes, job.cards

    queues: dict[Demand, deque[int]] = defaultdict(deque)
    demands_of_group: dict[str, set[Demand]] = defaultdict(set)
    dirty: set[Demand] = set()
    finishes: list[tuple[float, int, str, str]] = []  # (time, job index, site, class)
    passes = placements = 0
    next_submit = 0
    while next_submit < len(fifo) or finishes:
        now = min(
            fifo[next_submit].submit_s if next_submit < len(fifo) else float("inf"),
            finishes[0][0] if finishes else float("inf"),
        )
        # Everything that happens at `now`: finishes free cards first, then submits join the queue.
        while finishes and finishes[0][0] <= now:
            _, ended, site, cls = heapq.heappop(finishes)
            books.give(site, cls, fifo[ended].cards)
            dirty |= demands_of_group[books.group_of[site]]
        while next_submit < len(fifo) and fifo[next_submit].submit_s <= now:
            job = fifo[next_submit]
            demand = demand_of(job)
            if not books.could_ever_fit(demand):
                outcomes[next_submit] = JobOutcome(job, reason=_never(job, demand, books, mode))
            else:
                queues[demand].append(next_submit)
                demands_of_group[demand[0]].add(demand)
                dirty.add(demand)
            next_submit += 1
        if not dirty:
            continue
        passes += 1
        heads = [(queues[d][0], d) for d in dirty if queues[d] and books.fits(d)]
        dirty = set()
        placements += _schedule_pass(heads, books, queues, fifo, outcomes, finishes, now)
    assert all(o is not None for o in outcomes), "every job either ran or was found unschedulable"
    total = sum(p.cards for s in placed_on for p in s.pools)
    done = tuple(o for o in outcomes if o is not None)
    return SimulationResult(mode, done, total, passes, placements)


def _schedule_pass(
    heads: list[tuple[int, Demand]],
    books: _Books,
    queues: dict[Demand, deque[int]],
    fifo: list[TraceJob],
    outcomes: list[JobOutcome | None],
    finishes: list[tuple[float, int, str, str]],
    now: float,
) -> int:
    """Start every queued job that fits, earliest first, from the heads of the demands in `heads`."""
    placements = 0
    heapq.heapify(heads)
    while heads:
        index, demand = heapq.heappop(heads)
        if not books.fits(demand):
            continue  # a pass only takes cards: it will not fit again in this pass
        job = fifo[index]
        decision = place_in_windows(demand[1], job.cards, books.index[demand[0]], books.view)
        placements += 1
        assert decision is not None and decision.placement is not None, job
        site, cls = decision.placement.site, decision.placement.accelerator_class
        books.take(site, cls, job.cards)
        outcomes[index] = JobOutcome(job, site, cls, now)
        heapq.heappush(finishes, (now + job.duration_s, index, site, cls))
        queue = queues[demand]
        queue.popleft()
        if queue and books.fits(demand):
            heapq.heappush(heads, (queue[0], demand))
    return placements


def _never(job: TraceJob, demand: Demand, books: _Books, mode: Mode) -> str:
    group, classes, cards = demand
    where = f"its home site {job.home_site}" if mode == "siloed" else "any site"
    held = max((books.capacity[group].get(cls, 0) for cls in classes), default=0)
    wanted = job.accelerator or "any class"
    return f"needs {cards} cards of {wanted}; {where} holds at most {held} of them"
