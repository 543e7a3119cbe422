"""Placement is a pure function over a snapshot of sites: each rule has a test."""

from __future__ import annotations

from gateway.placement.place import place
from gateway.sites.model import Pool, SiteView


def site(
    name: str,
    *pools: Pool,
    connected: bool = True,
    draining: bool = False,
    leased: tuple[tuple[str, int], ...] = (),
) -> SiteView:
    return SiteView(name, connected, draining, pools, leased)


def pool(cls: str, offered: int, free: int | None = None, total: int | None = None) -> Pool:
    return Pool(cls, total or offered, offered, offered if free is None else free, 8)


def test_job_goes_to_the_only_site_with_its_class() -> None:
    sites = [site("a", pool("ascend-910b", 8)), site("b", pool("nvidia-h100", 8))]
    decision = place(["nvidia-h100"], 4, sites)
    assert decision.placement is not None
    assert (decision.placement.site, decision.placement.accelerator_class, decision.placement.cards) == (
        "b",
        "nvidia-h100",
        4,
    )


def test_best_fit_prefers_the_site_left_with_fewest_idle_cards() -> None:
    sites = [site("roomy", pool("nvidia-h100", 8)), site("snug", pool("nvidia-h100", 8, free=4))]
    decision = place(["nvidia-h100"], 4, sites)
    assert decision.placement is not None and decision.placement.site == "snug"


def test_offline_and_draining_sites_are_skipped_with_reasons() -> None:
    sites = [
        site("off", pool("nvidia-h100", 8), connected=False),
        site("drain", pool("nvidia-h100", 8), draining=True),
    ]
    decision = place(["nvidia-h100"], 1, sites)
    assert decision.placement is None
    assert {r.code for r in decision.reasons} == {"SITE_OFFLINE", "SITE_DRAINING"}


def test_leased_cards_bound_what_a_site_claims_free() -> None:
    # The site says 8 free, but the gateway has already leased 6 of its 8 offered cards there.
    lying = site("a", pool("nvidia-h100", 8, free=8), leased=(("nvidia-h100", 6),))
    decision = place(["nvidia-h100"], 4, [lying])
    assert decision.placement is None
    assert decision.reasons[0].code == "NO_FREE_CAPACITY"
    assert "2 of 8" in decision.reasons[0].message


def test_offer_smaller_than_the_job_is_a_distinct_reason() -> None:
    decision = place(["ascend-910b"], 16, [site("a", pool("ascend-910b", 8))])
    assert decision.placement is None
    assert decision.reasons[0].code == "OFFER_TOO_SMALL"


def test_site_without_a_matching_pool_says_what_it_offers() -> None:
    decision = place(["hygon-k100"], 1, [site("a", pool("ascend-910b", 8))])
    assert decision.reasons[0].code == "NO_MATCHING_POOL"
    assert "ascend-910b" in decision.reasons[0].message


def test_no_sites_at_all_is_explained() -> None:
    decision = place(["nvidia-h100"], 1, [])
    assert decision.placement is None and decision.reasons[0].code == "NO_SITES"


def test_same_inputs_give_the_same_decision_and_ties_go_by_class_order_then_name() -> None:
    sites = [
        site("b", pool("nvidia-h20", 8)),
        site("a", pool("nvidia-h100", 8)),
        site("c", pool("nvidia-h100", 8)),
    ]
    first = place(["nvidia-h100", "nvidia-h20"], 2, sites)
    again = place(["nvidia-h100", "nvidia-h20"], 2, list(reversed(sites)))
    assert first.placement == again.placement
    assert first.placement is not None and first.placement.site == "a"


def test_placement_never_exceeds_free_capacity() -> None:
    for free in range(0, 9):
        for cards in range(1, 10):
            decision = place(["nvidia-h100"], cards, [site("a", pool("nvidia-h100", 8, free=free))])
            assert (decision.placement is not None) == (cards <= free)


def test_a_centres_own_terms_remove_it_as_an_option() -> None:
    from gateway.jobs.model import JobSpec, Reason, Resources, StackRun
    from gateway.sites.model import SiteTerms

    spec = JobSpec("panda-lm", "eval", Resources("nvidia-h100", None, 4), (StackRun("cuda", "reg.evil/x", ("t",)),))
    picky = SiteView("a", True, False, (pool("nvidia-h100", 8),), terms=SiteTerms(tenants=("deepsea-ai",)))
    open_site = site("b", pool("nvidia-h100", 8, free=4))

    def allows(view: SiteView, cls: str) -> Reason | None:
        refusal = view.terms.refusal(spec, "reg.evil/x") if view.terms else ""
        return Reason("offers", "SITE_TERMS", refusal, view.name) if refusal else None

    decision = place(["nvidia-h100"], 4, [picky, open_site], allows)
    assert decision.placement is not None and decision.placement.site == "b"
    refused = next(c for c in decision.candidates if c.site == "a")
    assert refused.reasons[0].code == "SITE_TERMS" and "panda-lm" in refused.reasons[0].message


def test_site_terms_name_each_refusal() -> None:
    from gateway.jobs.model import JobSpec, Resources, StackRun
    from gateway.sites.model import SiteTerms

    spec = JobSpec("panda-lm", "eval", Resources("nvidia-h100", None, 4), (StackRun("cuda", "", ("t",)),))
    assert SiteTerms().refusal(spec, "") == ""
    assert "tenant" in SiteTerms(tenants=("deepsea-ai",)).refusal(spec, "")
    assert "project" in SiteTerms(projects=("panda-lm/inference",)).refusal(spec, "")
    assert "at most 2" in SiteTerms(max_job_cards=2).refusal(spec, "")
    terms = SiteTerms(image_registries=("harbor.centre-a.cn/ai",))
    assert terms.refusal(spec, "harbor.centre-a.cn/ai/llama:1") == ""
    assert "registry" in terms.refusal(spec, "harbor.centre-a.cn/aix/llama:1")
