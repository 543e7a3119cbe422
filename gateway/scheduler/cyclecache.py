"""One scheduling cycle's working memory, so that a cycle over 10,000 queued jobs costs little per job.

Owns: for the span of one cycle (one instant `now`, one policy, one usage snapshot), the index of free cards,
the sites' offers and leases, what each job *shape* may use, the shapes found to fit nowhere, and the
placement itself: exactly the decision of `gateway.placement.place.place_in_windows` (`place` over the
`CANDIDATE_WINDOW` tightest fits per class, a wider window only when every site of the last one was refused),
with the same scores and tie-breaks and the same node-shape rule (`gateway.placement.nodes`), computed from the
index's numbers instead of rebuilt `SiteView`s.

A job's shape is every field of its spec but its name, environment and commands (so tenant, project, classes,
resources, priority class, labels, runtime, data classification and region, the image per stack, topology, a
named reservation, and any field added later); jobs of one shape get the same verdicts. So, within a cycle:
- the policy's standing word (a centre's own terms, residency, rules at `now`) is asked once per (shape,
  site); the quota word once per (shape, class) until a dispatch in the same tenant or project (never again,
  for a shape no quota covers);
- a shape that found nowhere is skipped until cards come back: placing only takes cards and adds held usage,
  so what fit nowhere still fits nowhere. Cards come back when the index sees a site's free cards grow (the
  cycle's holds let go of a pool: `gateway.scheduler.cycleplan` updates the shared index) or a hook calls `release`.
The index is shared: a hook may cut and restore sites' free cards in it (the backfill and preemption holds do);
placement reads whatever it holds.
A job that names a dataset is placed by `place_near` instead: `place` with its dataset, over every site where it
fits (`gateway.placement.transfer`); only such jobs pay for that, `place` is unchanged for the others.
It does not order jobs, touch the store, send anything or build reasons for refusals (`place` does that when
someone asks why a job waits). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from operator import attrgetter

from gateway.jobs.model import JobSpec, Placement, Reason
from gateway.placement import nodes as node_shape
from gateway.placement.freeindex import FreeIndex
from gateway.placement.place import CANDIDATE_WINDOW, placed_reason
from gateway.placement.transfer import nearest, transfer_reason
from gateway.policy import FederationPolicy
from gateway.policy.catalogue import Catalogue
from gateway.policy.engine import standing_verdict, usage_verdict
from gateway.policy.network import DatasetSource
from gateway.policy.quotas import Usage, quotas_for
from gateway.sites.model import Pool, SiteView

Shape = tuple[object, ...]
Option = tuple[str, int, int, Pool]  # (class, cards offered, rank of the class in the job's list, the pool)


def site_terms_reason(
    site: SiteView, spec: JobSpec, cls: str, catalogue: Catalogue, judged: JobSpec | None = None
) -> Reason | None:
    """The centre's own veto on this job for `cls`, as its agent reported its terms; None when it accepts.
    `judged` (default: `spec`) is what the terms weigh, e.g. one part of a gang; the run is `spec`'s."""
    if site.terms is None:
        return None
    accelerator = catalogue.get(cls)
    run = spec.run_for(accelerator.stack if accelerator else "")
    refusal = site.terms.refusal(judged or spec, run.image if run else "")
    return Reason("offers", "SITE_TERMS", f"{site.name}'s own policy: {refusal}", site.name) if refusal else None


# Spec fields that neither placement nor the policy reads: jobs that differ only in these are judged alike.
# Every other field (a field added later included) is part of the shape, so a new field is safe by default.
_NOT_JUDGED = frozenset({"name", "env", "runs"})
_JUDGED = tuple(f.name for f in fields(JobSpec) if f.name not in _NOT_JUDGED)
_judged = attrgetter(*_JUDGED)  # those fields of a spec, as a tuple (read in C: once per job and cycle)


def shape_of(spec: JobSpec, classes: tuple[str, ...]) -> Shape:
    """Every field of a spec that placement or the policy may read (of the runs: stack and image, which site
    terms check), with the classes it may use: jobs of one shape are judged alike."""
    judged = _judged(spec)
    return (classes, tuple((run.stack, run.image) for run in spec.runs), *judged)


class CycleCache:
    def __init__(
        self,
        views: Mapping[str, SiteView],
        leases: dict[str, dict[str, int]],
        usage: Usage,
        policy: FederationPolicy,
        catalogue: Catalogue,
        now: datetime,
    ) -> None:
        """`leases` (site -> class -> cards) and `usage.held` are the scheduler's own: `take` adds to both."""
        assert isinstance(usage.held, dict)
        self.index = FreeIndex(views.values())
        self._base = dict(views)
        self._views: dict[str, SiteView] = {}  # current views, rebuilt only when asked for after a change
        self._leases, self._usage, self._held = leases, usage, usage.held
        self._policy, self._catalogue, self._now = policy, catalogue, now
        self._shapes: dict[Shape, int] = {}
        self._specs: list[JobSpec] = []  # one spec per shape id, to ask the policy with
        self._hopeless: set[int] = set()
        self._grown = self.index.grown
        self._standing: dict[tuple[int, str], tuple[Option, ...]] = {}
        # shape -> class -> room under its quotas: shapes some quota covers (a dispatch may change their word),
        # and shapes none covers (their word holds for the whole cycle).
        self._quota: dict[int, dict[str, bool]] = {}
        self._unlimited: dict[int, dict[str, bool]] = {}
        self._quota_applies: dict[int, bool] = {}
        # Node shape verdicts (`gateway.placement.nodes.fits`, a function of these numbers alone):
        # (cards per node, free nodes, largest partial free, free cards, cards, nodes) -> fits.
        self._node_fits: dict[tuple[int, int | None, int, int, int, int], bool] = {}

    # ---- what a job may use ---------------------------------------------------------------------------------
    def _shape_id(self, spec: JobSpec, classes: tuple[str, ...]) -> int:
        shape = shape_of(spec, classes)
        found = self._shapes.get(shape)
        if found is None:
            found = self._shapes[shape] = len(self._specs)
            self._specs.append(spec)
        return found

    def _options(self, shape: int, site: str, classes: tuple[str, ...], cards: int) -> tuple[Option, ...]:
        """The site's pools this shape may use by the standing word (the centre's terms, residency, rules) and
        whose offer is big enough, in the site's pool order: (class, cards offered, rank of the class, pool)."""
        key = (shape, site)
        found = self._standing.get(key)
        if found is None:
            spec, view = self._specs[shape], self._base[site]
            found = self._standing[key] = tuple(
                (pool.accelerator_class, pool.offered, classes.index(pool.accelerator_class), pool)
                for pool in view.pools
                if pool.accelerator_class in classes
                and pool.offered >= cards
                and site_terms_reason(view, spec, pool.accelerator_class, self._catalogue) is None
                and standing_verdict(self._policy, spec, self._now, site, pool.accelerator_class) is None
            )
        return found

    def _limited(self, shape: int) -> bool:
        """Whether any quota applies to the shape (a tenant's, its project's, a joint project's): only then can
        a dispatch change its quota word. An unknown tenant counts as limited (its verdict fails closed)."""
        found = self._quota_applies.get(shape)
        if found is None:
            try:
                found = bool(quotas_for(self._policy, self._specs[shape]))
            except Exception:
                found = True
            self._quota_applies[shape] = found
        return found

    def _room(self, shape: int) -> dict[str, bool]:
        return (self._quota if self._limited(shape) else self._unlimited).setdefault(shape, {})

    def _quota_room(self, shape: int, site: str, cls: str) -> bool:
        """Whether the shape's quotas leave room for it on `cls` (no quota reads the site)."""
        room = self._room(shape)
        found = room.get(cls)
        if found is None:
            spec = self._specs[shape]
            found = room[cls] = usage_verdict(self._policy, self._catalogue, spec, self._usage, site, cls) is None
        return found

    # ---- placement ------------------------------------------------------------------------------------------
    def place(self, spec: JobSpec, classes: tuple[str, ...]) -> Placement | None:
        """Where `place` would put this job now (over the best-fit windows), or None when nowhere."""
        cards = spec.resources.cards
        if not self.index.fits_somewhere(classes, cards):
            return None
        shape = self._shape_id(spec, classes)
        if self.index.grown != self._grown:  # a hook gave cards back through the index (a hold let go)
            self._grown = self.index.grown
            self._hopeless.clear()
        if shape in self._hopeless:
            return None
        offset = 0
        if len(classes) == 1:  # the common case, without merging windows of several classes
            while entries := self.index.window(classes[0], cards, CANDIDATE_WINDOW, offset):
                chosen = self._best_of_one(shape, classes, cards, entries, spec.resources.nodes)
                if chosen is not None:
                    return Placement(chosen[2], chosen[3], cards)
                offset += CANDIDATE_WINDOW
            self._hopeless.add(shape)
            return None
        while names := self.index.candidates(classes, cards, CANDIDATE_WINDOW, offset):
            chosen = self._best(shape, classes, cards, names, spec.resources.nodes)
            if chosen is not None:
                return Placement(chosen[2], chosen[3], cards)
            offset += CANDIDATE_WINDOW
        self._hopeless.add(shape)
        return None

    def place_near(
        self, spec: JobSpec, classes: tuple[str, ...], source: DatasetSource
    ) -> tuple[Placement, tuple[Reason, ...]] | None:
        """Where `place` would put a job that names a dataset (`source`), with its reasons (PLACED,
        DATASET_TRANSFER), or None when nowhere. It weighs every site where the job fits now, not only the
        best-fit windows: the dataset's own site may be a loose fit. Each site's verdict is `_best`'s."""
        cards = spec.resources.cards
        if not self.index.fits_somewhere(classes, cards):
            return None
        shape = self._shape_id(spec, classes)
        if self.index.grown != self._grown:
            self._grown = self.index.grown
            self._hopeless.clear()
        if shape in self._hopeless:
            return None
        names: dict[str, None] = {}
        offset = 0
        while batch := self.index.candidates(classes, cards, CANDIDATE_WINDOW, offset):
            names.update(dict.fromkeys(batch))
            offset += CANDIDATE_WINDOW
        options = [
            found
            for name in names
            if (found := self._best(shape, classes, cards, (name,), spec.resources.nodes)) is not None
        ]
        if not options:
            self._hopeless.add(shape)
            return None
        chosen = nearest(options, lambda option: option[2], lambda option: option, source)
        placement = Placement(chosen[2], chosen[3], cards)
        moved = transfer_reason(source, placement.site, [option[2] for option in options])
        return placement, (placed_reason(placement), moved)

    def _best(
        self, shape: int, classes: tuple[str, ...], cards: int, names: Sequence[str], nodes: int = 0
    ) -> tuple[float, int, str, str] | None:
        """`place`'s choice among `names`: per site its best-scoring pool (the first of equals, in the
        site's pool order), then the highest score, the class listed first, the site name. Returns
        (-score, rank, site, class). The hot loop of a cycle: look-ups are local on purpose."""
        best: tuple[float, int, str, str] | None = None
        standing, free_of = self._standing, self.index.free_table
        room = self._room(shape)
        for name in names:
            options = standing.get((shape, name))
            if options is None:
                options = self._options(shape, name, classes, cards)
            site_best: tuple[float, int, str, str] | None = None
            for cls, offered, rank, pool in options:
                free = free_of(cls).get(name, 0)
                if free < cards:
                    continue
                if pool.cards_per_node and not self._fits(pool, free, cards, nodes):
                    continue
                allowed = room.get(cls)
                if allowed is None:
                    allowed = self._quota_room(shape, name, cls)
                if not allowed:
                    continue
                score = 1.0 - (free - cards) / (offered or 1)
                if site_best is None or -score < site_best[0]:
                    site_best = (-score, rank, name, cls)
            if site_best is not None and (best is None or site_best < best):
                best = site_best
        return best

    def _best_of_one(
        self, shape: int, classes: tuple[str, ...], cards: int, entries: Sequence[tuple[int, str]], nodes: int = 0
    ) -> tuple[float, int, str, str] | None:
        """`_best` for a job of one class: each site of the window has one pool of it, whose free cards the
        index entry already holds."""
        best: tuple[float, int, str, str] | None = None
        standing, room, cls, node_fits = self._standing, self._room(shape), classes[0], self._node_fits
        for free, name in entries:
            options = standing.get((shape, name))
            if options is None:
                options = self._options(shape, name, classes, cards)
            if not options:
                continue
            _, offered, _, pool = options[0]
            if pool.cards_per_node:
                key = (pool.cards_per_node, pool.free_nodes, pool.largest_partial_free, free, cards, nodes)
                fits = node_fits.get(key)
                if fits is None:
                    fits = self._fits(pool, free, cards, nodes)
                if not fits:
                    continue
            allowed = room.get(cls)
            if allowed is None:
                allowed = self._quota_room(shape, name, cls)
            if not allowed:
                continue
            candidate = (-(1.0 - (free - cards) / (offered or 1)), 0, name, cls)
            if best is None or candidate < best:
                best = candidate
        return best

    def _fits(self, pool: Pool, free: int, cards: int, nodes: int) -> bool:
        """`gateway.placement.nodes.fits`, remembered for the cycle (a window asks it of the same numbers often)."""
        key = (pool.cards_per_node, pool.free_nodes, pool.largest_partial_free, free, cards, nodes)
        found = self._node_fits.get(key)
        if found is None:
            found = self._node_fits[key] = node_shape.fits(pool, free, cards, nodes)
        return found

    # ---- changes within the cycle ---------------------------------------------------------------------------
    def take(self, spec: JobSpec, placement: Placement) -> None:
        """A dispatch: the job's tenant and project hold more, the site has fewer cards free."""
        site, cls, cards = placement.site, placement.accelerator_class, placement.cards
        self._held[(spec.tenant, spec.project, cls)] += cards
        self._leases[site][cls] += cards
        self._refresh(site, cls)
        for shape in [s for s in self._quota if self._shares_a_scope(s, spec)]:
            del self._quota[shape]  # a tenant's or a joint project's quota may cover this job's usage

    def note_taken(self, spec: JobSpec, placement: Placement) -> None:
        """A hook placed `placement` itself (a gang's part), added it to the leases and held usage and told the
        index: forget the site's view and the quota words that usage covers."""
        self._views.pop(placement.site, None)
        for shape in [s for s in self._quota if self._shares_a_scope(s, spec)]:
            del self._quota[shape]

    def release(self, spec: JobSpec, placement: Placement) -> None:
        """The reverse of `take`, for a hook that gives cards back mid-cycle (a preemption, a shrunk lease):
        the job's tenant and project hold less, the site has more free, and every 'fits nowhere' and quota
        word of this cycle is forgotten (`capacity_freed`)."""
        site, cls, cards = placement.site, placement.accelerator_class, placement.cards
        self._held[(spec.tenant, spec.project, cls)] -= cards
        self._leases[site][cls] -= cards
        self._refresh(site, cls)
        self.capacity_freed()

    def _refresh(self, site: str, cls: str) -> None:
        """Put the site's free cards of `cls`, as `SiteView.free_cards` counts them, into the index."""
        self._views.pop(site, None)
        if site not in self.index.free_table(cls):
            return  # not placeable (offline, draining) or no such pool: nothing to place there anyway
        pool = next(p for p in self._base[site].pools if p.accelerator_class == cls)
        self.index.set_free(site, cls, max(0, min(pool.free, pool.offered - self._leases[site][cls])))

    def _shares_a_scope(self, shape: int, spec: JobSpec) -> bool:
        other = self._specs[shape]
        return other.tenant == spec.tenant or other.project == spec.project

    def capacity_freed(self) -> None:
        """Something gave cards back or lowered usage mid-cycle: forget every 'fits nowhere' and quota word."""
        self._hopeless.clear()
        self._quota.clear()

    def view(self, site: str) -> SiteView:
        """The site as placement sees it now, with this cycle's dispatches counted."""
        current = self._views.get(site)
        if current is None:
            leased = tuple(sorted((cls, n) for cls, n in self._leases.get(site, {}).items()))
            current = self._views[site] = _with_leases(self._base[site], leased)
        return current


def _with_leases(view: SiteView, leased: tuple[tuple[str, int], ...]) -> SiteView:
    """`dataclasses.replace(view, leased=leased)` without re-running the frozen `__init__` (once per dispatch)."""
    new = object.__new__(SiteView)
    new.__dict__.update(view.__dict__)
    new.__dict__["leased"] = leased
    return new
