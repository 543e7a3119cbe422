"""The free-capacity index finds the tightest fits by bisection and follows every dispatch."""

from __future__ import annotations

from gateway.placement.freeindex import FreeIndex
from gateway.sites.model import Pool, SiteView


def view(name: str, free: int, cls: str = "nvidia-h100", *, connected: bool = True, leased: int = 0) -> SiteView:
    return SiteView(name, connected, False, (Pool(cls, 16, 16, free, 8),), leased=((cls, leased),) if leased else ())


def test_candidates_are_the_tightest_fits_in_order() -> None:
    index = FreeIndex([view("a", 16), view("b", 4), view("c", 2), view("d", 8)])
    assert index.candidates(("nvidia-h100",), 3, limit=2) == ["b", "d"]
    assert index.candidates(("nvidia-h100",), 3, limit=2, offset=2) == ["a"]
    assert index.largest("nvidia-h100") == 16 and index.fits_somewhere(("nvidia-h100",), 16)
    assert not index.fits_somewhere(("nvidia-h100",), 17) and not index.fits_somewhere(("hygon-k100",), 1)


def test_updates_follow_a_dispatch_and_drop_sites_that_went_away() -> None:
    index = FreeIndex([view("a", 16), view("b", 4)])
    index.update(view("a", 16, leased=14))  # a dispatch leased 14 cards at a
    assert index.candidates(("nvidia-h100",), 3, limit=5) == ["b"]
    index.update(view("b", 4, connected=False))
    assert index.candidates(("nvidia-h100",), 1, limit=5) == ["a"]
    assert index.largest("nvidia-h100") == 2
