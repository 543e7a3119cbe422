"""One scheduling cycle's earmarks: what every job sees of an earmarked pool, and what a job that fits nowhere
may do.

Owns: `CyclePlan`, built at the start of a cycle over the cycle's site views and free index. It cuts every
earmarked pool down to what other jobs may take (`gateway.placement.backfill.earmarked_view`), keeps that true
as the cycle places jobs (`placed`), and answers for a job that fits nowhere (`blocked`), in this order:
1. a job with cards held for it (its victims are stopping) takes them once they are free, else waits;
2. a job certain to end before a reservation starts may use that reservation's free cards (backfill);
3. a job may preempt preemptible jobs of lower priority on one pool (`gateway.placement.preemption`); the cards they
   free are then held for it;
4. else, if it is the first job of one of its classes in queue order to fit nowhere, it becomes that class's
   head and holds a reservation where it could start earliest (`gateway.placement.backfill.earliest_start`).

How many heads: one per accelerator class, the first blocked job of the class in queue order (EASY backfill,
per class). Classes are disjoint pools of cards, so a big H100 job waiting must not stop Ascend jobs from
backfilling, and one head per class bounds a cycle's extra cost by the number of classes, not the queue (a
reservation for every waiting job, as conservative backfill keeps, costs a timeline per job per cycle and
leaves little room to backfill). The next job of the class is the head once this one starts, and aging lifts
every job to the front in time, so none starves. At most one hold per pool.

It sends nothing and changes no job: `blocked` returns a placement for the scheduler to dispatch, and `finish`
the preemptions for it to send. No I/O; `now` is passed in.
"""

from __future__ import annotations

import heapq
from bisect import insort
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping
from datetime import datetime, timedelta

from gateway.jobs.model import Job, JobState, Placement, Reason
from gateway.placement.backfill import (
    Earmark,
    EarmarkKind,
    Release,
    earliest_start_in_order,
    earmarked_view,
    latest_end,
)
from gateway.placement.freeindex import FreeIndex
from gateway.placement.place import OptionFilter, PlacementDecision, place
from gateway.placement.preemption import (
    PreemptionOption,
    PreemptOrder,
    Victim,
    base_priority,
    grace_period_s,
    may_be_preempted,
    preemptible_below,
    select_victims,
)
from gateway.policy import FederationPolicy
from gateway.scheduler.earmarks import PREEMPTION_SLACK, EarmarkBook, Preemption
from gateway.scheduler.releases import Releases
from gateway.sites.model import Pool, SiteView

Pool_ = tuple[str, str]  # (site, class)


def _pool(view: SiteView, cls: str) -> Pool | None:
    return next((p for p in view.pools if p.accelerator_class == cls), None)


class CyclePlan:
    """The holds of one cycle. `views` and `index` are the scheduler's own, changed in place."""

    def __init__(
        self,
        book: EarmarkBook,
        now: datetime,
        policy: FederationPolicy,
        views: dict[str, SiteView],
        index: FreeIndex,
        holding: Mapping[str, Job],
        preemptible: Mapping[str, Job],
        releases: Releases,
        queued: Collection[str],
        active: Collection[str],
    ) -> None:
        book.begin(now, queued, active)
        self._book, self._now, self._policy = book, now, policy
        self._views, self._index = views, index
        self._holding = holding  # the jobs holding cards, by id (live usage's own: read only)
        self._preemptible = preemptible  # those of them of a preemptible class (likewise)
        self._releases = releases  # when their cards come back (live usage's own: read only)
        self._raw: dict[str, SiteView] = {}  # sites with holds: their uncut views
        self._holds: dict[Pool_, Earmark] = {}
        self._by_job: dict[str, Earmark] = {}
        self._by_class: dict[str, list[Earmark]] = defaultdict(list)
        self._heads: dict[str, str] = {}  # class -> the job holding its reservation this cycle
        self._unreachable: dict[str, int] = {}  # class -> fewest cards no pool of it is known to ever free
        self._placed: dict[Pool_, list[Release]] = {}  # this cycle's dispatches' releases, in end order
        self._victims: dict[str, dict[str, list[Job]]] | None = None  # class -> site -> preemptible jobs
        self._no_victims: dict[tuple[str, int], int] = {}  # (class, priority) -> fewest cards none can free
        self._stopping = book.stopping()
        self._orders: list[PreemptOrder] = []
        for preemption in book.preemptions.values():
            self._hold_freed_cards(preemption)

    # ---- what the scheduler calls -----------------------------------------------------------------------------
    def placed(self, job: Job, placement: Placement, view: SiteView, indexed: bool = False) -> None:
        """`job` was placed (its site's new uncut `view`): it ends by its max runtime, eats into any hold on
        the pool it runs past, and gives up a hold of its own. `indexed`: the index already has the view's free
        cards (the cycle cache's `take` put them there), which is all it needs while nothing is held."""
        site, cls = placement.site, placement.accelerator_class
        end = latest_end(None, job.spec.max_runtime, self._now)
        if end is not None:  # one that may run for ever frees nothing anyone can count on
            insort(self._placed.setdefault((site, cls), []), Release(end, placement.cards), key=_end)
        self._views[site] = view
        if not self._holds:  # the common case: nothing is held, the view is the site's own
            if not indexed:
                self._index.update(view)
            return
        if site in self._raw:
            self._raw[site] = view
        own = self._by_job.get(job.job_id)
        if own is not None:
            self._drop(own)
        hold = self._holds.get((site, cls))
        if hold is not None:
            hold.take(placement.cards, latest_end(None, job.spec.max_runtime, self._now))
        self._refresh(site)

    def blocked(self, job: Job, classes: tuple[str, ...], allows: OptionFilter) -> PlacementDecision | None:
        """A job that fits nowhere in the cut views: a placement it may still have, or None (it waits; a
        preemption or a reservation may have been made for it)."""
        cards = job.spec.resources.cards
        own = self._by_job.get(job.job_id)
        if own is not None and own.kind is EarmarkKind.PREEMPTION:
            return self._take_own(own, cards, allows, job.spec.resources.nodes)
        if job.job_id in self._book.preemptions:
            return None  # its victims' site is not placeable now: it waits for them, never preempts twice
        end = latest_end(None, job.spec.max_runtime, self._now)
        for cls in classes:
            for hold in self._by_class.get(cls, ()):
                if (
                    hold.ends_before(end)
                    and (decision := self._backfill(hold, cards, allows, end, job.spec.resources.nodes)) is not None
                ):
                    return decision
        if not self._preempt(job, classes, cards, allows):
            self._reserve(job, classes, cards, allows)
        return None

    def head(self, cls: str) -> str | None:
        """The job holding this cycle's reservation of `cls` so far, if any."""
        return self._heads.get(cls)

    def finish(self) -> list[PreemptOrder]:
        """Record the cycle's holds for the next one; the preemptions to send."""
        self._book.finish(list(self._holds.values()))
        return self._orders

    # ---- 1 and 2: held cards ----------------------------------------------------------------------------------
    def _take_own(self, hold: Earmark, cards: int, allows: OptionFilter, nodes: int = 0) -> PlacementDecision | None:
        view = earmarked_view(self._raw[hold.site], self._site_holds(hold.site, but=hold))
        decision = place((hold.accelerator_class,), cards, [view], allows, nodes=nodes)
        return decision if decision.placement is not None else None

    def _backfill(
        self, hold: Earmark, cards: int, allows: OptionFilter, end: datetime | None, nodes: int = 0
    ) -> PlacementDecision | None:
        view = earmarked_view(self._raw[hold.site], self._site_holds(hold.site, but=hold))
        decision = place((hold.accelerator_class,), cards, [view], allows, nodes=nodes)
        if decision.placement is None or end is None:
            return None
        note = Reason(
            "capacity",
            "BACKFILLED",
            f"backfilled into a larger waiting job's reservation on {hold.site}:"
            f" ends by {end.isoformat(timespec='seconds')},"
            f" before it starts at {hold.start.isoformat(timespec='seconds')}",
            hold.site,
        )
        return PlacementDecision(decision.placement, decision.candidates, (*decision.reasons, note))

    # ---- 3: preemption ----------------------------------------------------------------------------------------
    def _preempt(self, job: Job, classes: tuple[str, ...], cards: int, allows: OptionFilter) -> bool:
        priority = base_priority(self._policy, job.spec)
        if not preemptible_below(self._policy, priority):
            return False
        options: list[PreemptionOption] = []
        for cls in classes:
            if self._no_victims.get((cls, priority), cards + 1) <= cards:
                continue
            refused = found = False
            for site, jobs in self._victim_index().get(cls, {}).items():
                view = self._views.get(site)
                pool = _pool(view, cls) if view is not None else None
                if view is None or pool is None or (site, cls) in self._holds or pool.offered < cards:
                    continue
                if not view.connected or view.draining:
                    continue
                eligible = [self._victim(v, site, cls) for v in jobs if self._eligible(v, job, priority)]
                chosen = select_victims(cards - view.free_cards(pool), eligible) if eligible else None
                if not chosen:
                    continue
                if allows(view, cls) is not None:
                    refused = True
                    continue
                options.append(PreemptionOption(site, cls, cards - view.free_cards(pool), chosen))
                found = True
            if not (found or refused) and job.job_id not in self._book.preempted_by:
                # Victims only ever get fewer within a cycle: a job of this priority needing as many or more
                # cards of this class will not find enough either.
                self._no_victims[(cls, priority)] = min(cards, self._no_victims.get((cls, priority), cards))
        if not options:
            return False
        self._start_preemption(job, cards, min(options, key=lambda o: o.rank(self._now)))
        return True

    def _start_preemption(self, job: Job, cards: int, option: PreemptionOption) -> None:
        victims = [self._holding[v.job_id] for v in option.victims]
        graces = {v.job_id: grace_period_s(self._policy, v.spec) for v in victims}
        grace = max(graces.values())
        for victim in victims:
            self._orders.append(PreemptOrder(option.site, victim.job_id, victim.epoch, graces[victim.job_id]))
        deadline = self._now + timedelta(seconds=grace) + PREEMPTION_SLACK
        ids = tuple(sorted(v.job_id for v in victims))
        preemption = Preemption(job.job_id, option.site, option.accelerator_class, cards, ids, grace, deadline)
        self._book.record_preemption(preemption)
        self._stopping.update(ids)
        self._hold_freed_cards(preemption)

    def _eligible(self, victim: Job, preemptor: Job, priority: int) -> bool:
        if victim.job_id in self._stopping or self._book.preempted_by.get(preemptor.job_id) == victim.job_id:
            return False  # already stopping; or it preempted this job, which must not preempt it back
        if not may_be_preempted(self._policy, victim.spec, priority):
            return False
        if victim.job_id in self._book.preempted_by:  # preempted before: its new attempt gets its grace first
            if victim.state != JobState.RUNNING or victim.start_time is None:
                return False
            grace = timedelta(seconds=grace_period_s(self._policy, victim.spec))
            return self._now - victim.start_time >= grace
        return True

    def _victim(self, job: Job, site: str, cls: str) -> Victim:
        cards = sum(p.cards for p in job.placements if p.site == site and p.accelerator_class == cls)
        started = job.start_time if job.state == JobState.RUNNING and job.start_time else job.update_time
        return Victim(job.job_id, cards, base_priority(self._policy, job.spec), started)

    def _victim_index(self) -> dict[str, dict[str, list[Job]]]:
        if self._victims is None:
            self._victims = defaultdict(lambda: defaultdict(list))
            for job in self._preemptible.values():
                if job.state in {JobState.RUNNING, JobState.DISPATCHED} and may_be_preempted(
                    self._policy, job.spec, 1 << 30
                ):
                    for p in job.placements:
                        self._victims[p.accelerator_class][p.site].append(job)
        return self._victims

    # ---- 4: reservations --------------------------------------------------------------------------------------
    def _reserve(self, job: Job, classes: tuple[str, ...], cards: int, allows: OptionFilter) -> None:
        open_classes = [c for c in classes if c not in self._heads and self._unreachable.get(c, cards + 1) > cards]
        if not open_classes:
            return
        found: list[tuple[datetime, int, str, str]] = []
        for cls in open_classes:
            reached = False
            for site in self._index_sites(cls):
                view = self._views[site]
                pool = _pool(view, cls)
                if pool is None or pool.offered < cards or (site, cls) in self._holds:
                    continue
                earliest = earliest_start_in_order(
                    cards, view.free_cards(pool), self._releases_at(site, cls), self._now
                )
                if earliest is not None:
                    reached = True
                    found.append((*earliest, site, cls))
            if not reached:
                self._unreachable[cls] = cards
        for start, spare, site, cls in sorted(found):  # earliest, then tightest, then by name
            if allows(self._views[site], cls) is None:
                self._heads[cls] = job.job_id
                self._add(Earmark(job.job_id, site, cls, cards, start, spare, EarmarkKind.BACKFILL))
                return

    def _index_sites(self, cls: str) -> list[str]:
        """The placeable sites with a pool of `cls` (the free index knows them, by free cards)."""
        return self._index.candidates((cls,), 0, len(self._views))

    def _releases_at(self, site: str, cls: str) -> Iterator[Release]:
        """The pool's releases in end order: the attempts holding cards there, and this cycle's dispatches."""
        held = self._releases.at(site, cls, self._now)
        placed = self._placed.get((site, cls))
        return heapq.merge(held, placed, key=_end) if placed else held

    # ---- the holds and the cut views --------------------------------------------------------------------------
    def _hold_freed_cards(self, preemption: Preemption) -> None:
        """Keep the cards a preemption frees for its preemptor: what is free now plus what its victims still
        hold, less what the preemptor takes, is all anyone else may use."""
        view = self._views.get(preemption.site)
        pool = _pool(view, preemption.accelerator_class) if view is not None else None
        if view is None or pool is None:
            return
        key = (preemption.site, preemption.accelerator_class)
        stopping = sum(
            p.cards
            for victim in preemption.victims
            if (job := self._holding.get(victim)) is not None
            for p in job.placements
            if (p.site, p.accelerator_class) == key
        )
        spare = view.free_cards(pool) + stopping - preemption.cards
        self._add(Earmark(preemption.preemptor, *key, preemption.cards, self._now, spare, EarmarkKind.PREEMPTION))

    def _add(self, hold: Earmark) -> None:
        self._raw.setdefault(hold.site, self._views[hold.site])
        self._holds[(hold.site, hold.accelerator_class)] = hold
        self._by_job[hold.job_id] = hold
        self._by_class[hold.accelerator_class].append(hold)
        self._refresh(hold.site)

    def _drop(self, hold: Earmark) -> None:
        del self._holds[(hold.site, hold.accelerator_class)]
        del self._by_job[hold.job_id]
        self._by_class[hold.accelerator_class].remove(hold)
        self._refresh(hold.site)

    def _site_holds(self, site: str, but: Earmark | None = None) -> list[Earmark]:
        view = self._raw.get(site)
        pools = view.pools if view is not None else ()
        found = (self._holds.get((site, p.accelerator_class)) for p in pools)
        return [h for h in found if h is not None and h is not but]

    def _refresh(self, site: str) -> None:
        """Cut the site's view to its holds (or uncut it when none is left) and tell the index."""
        raw = self._raw.get(site)
        if raw is None:
            self._index.update(self._views[site])
            return
        holds = self._site_holds(site)
        self._views[site] = earmarked_view(raw, holds)
        if not holds:
            del self._raw[site]
        self._index.update(self._views[site])


def _end(release: Release) -> datetime:
    assert release.end is not None
    return release.end
