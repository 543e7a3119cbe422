"""Planning a booking: which sites, which classes and how many cards each, for an advance reservation.

Owns: the pure choice of parts for N cards over a window: every site judged (liveness, drain, the sites the
request names, the classes the policy allows, the policy's word on each option, each pool's offered cards
minus the cards other live reservations book at that site in an overlapping window), one site by best fit
when one can hold it all, else a split over at most `max_sites` sites, largest first. It returns the parts,
or no parts and a reason for every site it turned down; and the policy's view of a booking (as a job of the
window's length, judged at its start). No I/O, no clock: the caller passes the snapshot, the other bookings
and the policy. It does not ask the sites: `gateway.reservations.book` does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from fedgate.common.reasons import ReasonCode
from gateway.jobs.model import JobSpec, Reason, StackRun
from gateway.placement.place import OptionFilter
from gateway.policy import FederationPolicy
from gateway.policy.catalogue import Catalogue
from gateway.policy.engine import option_verdict
from gateway.policy.quotas import Usage
from gateway.reservations.model import Reservation, ReservationPart, ReservationRequest
from gateway.sites.model import SiteView

Booked = dict[tuple[str, str], int]  # (site, class) -> cards booked by other live reservations


@dataclass(frozen=True)
class Plan:
    """The parts to ask the sites for (empty when none fits) and, when none fits, why each site could not."""

    parts: tuple[ReservationPart, ...]
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class _Option:
    site: str
    accelerator_class: str
    available: int  # offered cards not booked by other reservations in the window
    rank: int  # the class's place in the allowed classes: ties go to the first


def booking_spec(request: ReservationRequest) -> JobSpec:
    """The reservation as the policy judges it: a job of the project, as large and as long as the window.
    Its one run names no stack, so every class that meets the request may serve it."""
    return JobSpec(
        tenant=request.tenant,
        project=request.project,
        resources=request.resources,
        runs=(StackRun(command=("reservation",)),),
        name=request.name,
        max_runtime=request.end - request.start,
    )


def offered_usage(views: Iterable[SiteView]) -> Usage:
    """Usage with nothing held: a booking is judged on its own size; share quotas follow what is offered."""
    offered: dict[str, int] = defaultdict(int)
    for view in views:
        if view.connected and not view.draining:
            for pool in view.pools:
                offered[pool.accelerator_class] += pool.offered
    return Usage(offered=offered)


def booking_allows(
    policy: FederationPolicy, catalogue: Catalogue, spec: JobSpec, start: datetime, usage: Usage
) -> OptionFilter:
    """The policy's word on each (site, class) for a booking, judged at the window's `start`, and the centre's
    own terms. The centre's job-size limit is left out: it bounds the jobs that run in the booking, not the
    booking itself."""

    def allows(site: SiteView, cls: str) -> Reason | None:
        if site.terms is not None:
            refusal = replace(site.terms, max_job_cards=0).refusal(spec, "")
            if refusal:
                return Reason("offers", ReasonCode.SITE_TERMS, f"{site.name}'s own policy: {refusal}", site.name)
        return option_verdict(policy, catalogue, spec, start, usage, site.name, cls)

    return allows


def booked_cards(reservations: Iterable[Reservation], start: datetime, end: datetime, skip: str = "") -> Booked:
    """Cards that live reservations (other than `skip`) hold per (site, class) in windows overlapping [start, end).

    Overlapping bookings are simply added up, which is safe (never over-books) though it may refuse a booking
    that two disjoint earlier ones would have left room for."""
    booked: Booked = defaultdict(int)
    for reservation in reservations:
        if reservation.reservation_id == skip or not reservation.state.live or not reservation.overlaps(start, end):
            continue
        for part in reservation.held_parts:
            booked[(part.site, part.accelerator_class)] += part.cards
    return booked


def _judge(
    view: SiteView, classes: Sequence[str], cards: int, booked: Booked, allows: OptionFilter
) -> tuple[list[_Option], list[Reason]]:
    """A site's usable options (class and cards available), or the reasons it has none."""
    name = view.name
    if not view.connected:
        return [], [Reason("offers", ReasonCode.SITE_OFFLINE, "agent not connected", name)]
    if view.draining:
        return [], [Reason("offers", ReasonCode.SITE_DRAINING, "site is draining", name)]
    pools = [p for p in view.pools if p.accelerator_class in classes]
    if not pools:
        offered = ", ".join(sorted({p.accelerator_class for p in view.pools})) or "nothing"
        return [], [Reason("offers", ReasonCode.NO_MATCHING_POOL, f"{name} offers {offered}", name)]
    options: list[_Option] = []
    reasons: list[Reason] = []
    for pool in pools:
        cls = pool.accelerator_class
        verdict = allows(view, cls)
        if verdict is not None:
            reasons.append(verdict)
            continue
        taken = booked.get((name, cls), 0)
        available = max(0, pool.offered - taken)
        if available == 0:
            reasons.append(_short(name, cls, pool.offered, taken, cards))
            continue
        options.append(_Option(name, cls, available, classes.index(cls)))
        if available < cards:
            reasons.append(_short(name, cls, pool.offered, taken, cards))
    return options, reasons


def _short(site: str, cls: str, offered: int, taken: int, cards: int) -> Reason:
    booked = f"; {taken} of them are booked by other reservations in the window" if taken else ""
    return Reason(
        "capacity", ReasonCode.BOOKED_OUT, f"{site} offers {offered} {cls} cards{booked}; {cards} needed", site
    )


def plan_booking(
    cards: int,
    classes: Sequence[str],
    views: Iterable[SiteView],
    booked: Booked,
    allows: OptionFilter,
    *,
    sites: Collection[str] = (),
    max_sites: int = 1,
    exclude: Collection[str] = (),
) -> Plan:
    """Parts for `cards` cards of any of `classes`: on one site by best fit (fewest offered cards left
    unbooked; ties to the class listed first, then the site name) when one can hold them all, else split over
    at most `max_sites` sites taking the largest first. `sites` limits the choice (empty: any); `exclude`
    names sites not to ask again (they refused). The same inputs always give the same plan."""
    options: list[_Option] = []
    reasons: list[Reason] = []
    considered = 0
    for view in sorted(views, key=lambda v: v.name):
        if (sites and view.name not in sites) or view.name in exclude:
            continue
        considered += 1
        found, why = _judge(view, classes, cards, booked, allows)
        options += found
        reasons += why
    whole = [o for o in options if o.available >= cards]
    if whole:
        best = min(whole, key=lambda o: (o.available - cards, o.rank, o.site))
        return Plan((ReservationPart(best.site, best.accelerator_class, cards),), ())
    if not considered:
        where = f"none of the sites named ({', '.join(sorted(sites))}) is" if sites else "no site is"
        return Plan((), (Reason("offers", ReasonCode.NO_SITES, f"{where} left to ask"),))
    if max_sites > 1 and options:
        parts = _split(cards, options, max_sites)
        if parts:
            return Plan(parts, ())
        largest = _largest_per_site(options)[:max_sites]
        reasons.append(
            Reason(
                "capacity",
                ReasonCode.SPLIT_TOO_SMALL,
                f"the {len(largest)} largest site(s) can book {sum(o.available for o in largest)} of the "
                f"{cards} cards asked for, split over at most {max_sites} sites",
            )
        )
    return Plan((), tuple(reasons))


def _largest_per_site(options: list[_Option]) -> list[_Option]:
    """Each site's option with the most cards available, largest first (ties: class order, then site name)."""
    best: dict[str, _Option] = {}
    for option in options:
        kept = best.get(option.site)
        if kept is None or (option.available, -option.rank) > (kept.available, -kept.rank):
            best[option.site] = option
    return sorted(best.values(), key=lambda o: (-o.available, o.rank, o.site))


def _split(cards: int, options: list[_Option], max_sites: int) -> tuple[ReservationPart, ...]:
    """Largest sites first until the cards are covered; () when `max_sites` sites cannot cover them."""
    parts: list[ReservationPart] = []
    left = cards
    for option in _largest_per_site(options)[:max_sites]:
        take = min(left, option.available)
        parts.append(ReservationPart(option.site, option.accelerator_class, take))
        left -= take
        if left == 0:
            return tuple(parts)
    return ()
