"""FRAGMENTED: a job held to one site waits although the sites that would take it hold enough free cards of
its class between them, only never enough at one. The reason is part of the chain `place` returns, so the
pending reasons of a queued job and `explain` both carry it."""

from __future__ import annotations

from gateway.jobs.model import Reason
from gateway.placement.place import fragmentation, place
from gateway.sites.model import Pool, SiteView

H100 = "nvidia-h100"


def site(name: str, *pools: Pool, connected: bool = True, draining: bool = False) -> SiteView:
    return SiteView(name, connected, draining, pools)


def h100(free: int, offered: int = 8) -> Pool:
    return Pool(H100, offered, offered, free, 8)


def codes(reasons: tuple[Reason, ...]) -> list[str]:
    return [r.code for r in reasons]


def test_free_cards_split_across_sites_are_reported_as_fragmented() -> None:
    sites = [site("a", h100(4)), site("b", h100(3)), site("c", h100(2))]
    decision = place([H100], 8, sites)
    assert decision.placement is None
    assert codes(decision.reasons) == ["NO_FREE_CAPACITY"] * 3 + ["FRAGMENTED"]
    split = decision.reasons[-1]
    assert split.stage == "capacity"
    assert split.message.startswith("9 nvidia-h100 cards are free across 3 sites, at most 4 at one")
    assert "needs 8 at one site" in split.message


def test_not_enough_free_cards_anywhere_is_not_fragmentation() -> None:
    decision = place([H100], 8, [site("a", h100(4)), site("b", h100(3))])
    assert "FRAGMENTED" not in codes(decision.reasons)


def test_a_job_that_fits_somewhere_is_placed_not_told_about_fragments() -> None:
    decision = place([H100], 4, [site("a", h100(4)), site("b", h100(3))])
    assert decision.placement is not None
    assert fragmentation([H100], 4, [site("a", h100(4)), site("b", h100(3))]) is None


def test_cards_at_sites_that_would_refuse_the_job_do_not_count() -> None:
    refused = Reason("policy", "RESIDENCY", "not in this region", "b")
    sites = [
        site("a", h100(4)),
        site("b", h100(4)),
        site("c", h100(4), draining=True),
        site("d", h100(4), connected=False),
    ]
    assert fragmentation([H100], 8, sites) is not None  # a and b together

    def allows(view: SiteView, cls: str) -> Reason | None:
        return refused if view.name == "b" else None

    assert fragmentation([H100], 8, sites, allows) is None  # only a is left: 4 free, fewer than 8


def test_a_job_that_may_span_sites_gets_no_fragmented_reason_from_single_site_placement() -> None:
    sites = [site("a", h100(4)), site("b", h100(4))]
    assert "FRAGMENTED" in codes(place([H100], 8, sites).reasons)
    assert "FRAGMENTED" not in codes(place([H100], 8, sites, max_sites=2).reasons)


def test_the_first_class_of_the_job_that_is_fragmented_is_named() -> None:
    sites = [site("a", h100(4), Pool("nvidia-a100", 8, 8, 4, 8)), site("b", h100(4), Pool("nvidia-a100", 8, 8, 4, 8))]
    split = fragmentation(["nvidia-a100", H100], 8, sites)
    assert split is not None and split.message.startswith("8 nvidia-a100 cards")
