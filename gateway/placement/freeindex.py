"""An index of free offered cards per class and site, so that a scheduling cycle never scans every site for
every job (DESIGN: index free capacity by class, evaluate incrementally).

Owns: per class, the placeable sites (connected, not draining) sorted by free cards, updated site by site
after each dispatch; the largest free block per class (the cheap "fits nowhere" test); and best-fit
candidate windows (the sites with the fewest free cards that still fit the job) for `place` to choose among.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from gateway.sites.model import SiteView

_EMPTY: Mapping[str, int] = {}


class FreeIndex:
    def __init__(self, views: Iterable[SiteView]) -> None:
        self._free: dict[str, dict[str, int]] = defaultdict(dict)  # class -> site -> free cards
        self._sorted: dict[str, list[tuple[int, str]]] = defaultdict(list)  # class -> [(free, site)] ascending
        # How many times `update` has seen a site's free cards of a class grow (or appear): a reader that
        # concluded "fits nowhere" knows when to look again. `set_free` (a dispatch) never counts.
        self.grown = 0
        # As `update` of each view in turn would leave it, with each class's list sorted once (a cycle builds
        # the index over every site).
        for view in views:
            if view.connected and not view.draining:
                for pool in view.pools:
                    self._free[pool.accelerator_class][view.name] = view.free_cards(pool)
        for cls, sites in self._free.items():
            self._sorted[cls] = sorted((free, site) for site, free in sites.items())
            self.grown += len(sites)

    def update(self, view: SiteView) -> None:
        """Take in a site's current view (after a dispatch, a report, a drain)."""
        placeable = view.connected and not view.draining
        pools = {pool.accelerator_class: view.free_cards(pool) for pool in view.pools} if placeable else {}
        for cls in set(pools) | {c for c, sites in self._free.items() if view.name in sites}:
            if cls in pools and self._free[cls].get(view.name) == pools[cls]:
                continue  # unchanged (a dispatch already told the index): nothing to move
            old = self._free[cls].pop(view.name, None)
            if old is not None:
                entries = self._sorted[cls]
                del entries[bisect.bisect_left(entries, (old, view.name))]
            if cls in pools:
                self._free[cls][view.name] = pools[cls]
                bisect.insort(self._sorted[cls], (pools[cls], view.name))
                if old is None or pools[cls] > old:
                    self.grown += 1

    def set_free(self, site: str, cls: str, free: int) -> None:
        """Take in one (site, class)'s free cards, for a site already indexed with that class (a dispatch)."""
        entries = self._sorted[cls]
        old = self._free[cls][site]
        del entries[bisect.bisect_left(entries, (old, site))]
        self._free[cls][site] = free
        bisect.insort(entries, (free, site))

    def free(self, site: str, cls: str) -> int:
        """Free cards of `cls` at an indexed (placeable) site; 0 when it has none to place."""
        return self._free.get(cls, {}).get(site, 0)

    def free_table(self, cls: str) -> Mapping[str, int]:
        """Site -> free cards of `cls`, placeable sites only: a live read-only view for hot loops."""
        return self._free.get(cls, _EMPTY)

    def largest(self, cls: str) -> int:
        entries = self._sorted.get(cls)
        return entries[-1][0] if entries else 0

    def total(self, cls: str) -> int:
        """Free cards of `cls` over all placeable sites (what a gang spanning sites could use at most)."""
        return sum(self._free.get(cls, {}).values())

    def fits_somewhere(self, classes: Sequence[str], cards: int) -> bool:
        return any(self.largest(cls) >= cards for cls in classes)

    def window(self, cls: str, cards: int, limit: int, offset: int = 0) -> list[tuple[int, str]]:
        """`candidates` for one class, with each site's free cards: [(free, site)], tightest fit first."""
        entries = self._sorted.get(cls, [])
        start = bisect.bisect_left(entries, (cards, "")) + offset
        return entries[start : start + limit]

    def candidates(self, classes: Sequence[str], cards: int, limit: int, offset: int = 0) -> list[str]:
        """Up to `limit` sites per class, from the `offset`-th tightest fit on: the sites where the job leaves
        the fewest cards idle, which is where best fit will put it."""
        names: dict[str, None] = {}
        for cls in classes:
            entries = self._sorted.get(cls, [])
            start = bisect.bisect_left(entries, (cards, "")) + offset
            for _, site in entries[start : start + limit]:
                names[site] = None
        return list(names)
