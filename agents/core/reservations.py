"""Advance reservations at this centre: the gateway asks whether the centre will keep N cards of a class for a
project in a future window; the centre says yes or no, by its own terms.

Owns: judging a reservation (the centre accepts the tenant and project; the pool exists; the cards fit in what
the pool offers across the whole window, following its offer schedule, less the cards of the other reservations
it confirmed for overlapping windows), keeping the confirmed reservations in memory (idempotent by reservation
id, each one logged), and releasing them on Abort. It does not hold devices: during the window the gateway
keeps the cards for the project and launches its jobs as usual, and the agent checks each launch as always.
SiteReservations live in memory only: after a restart of the agent the gateway's books still hold, but this agent
no longer counts them against new reservations.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from agents.core.commands import Reserve
from agents.core.model import PoolSpec, ReserveReply
from agents.policy.terms import SitePolicy
from fedgate.common.offers import lowest_offer
from fedgate.common.terms import booking_refusal

log = logging.getLogger(__name__)

RESERVATION_PREFIX = "book:"
"""Reservation ids of advance reservations start with this; gang holds use other ids."""
MAX_OFFER_STEPS = 2000
"""Offer changes followed across a window (a month of hourly windows fits); past this the offer now decides."""


def is_advance_reservation(reservation_id: str) -> bool:
    return reservation_id.startswith(RESERVATION_PREFIX)


@dataclass(frozen=True)
class SiteReservation:
    reservation_id: str
    tenant: str
    project: str
    accelerator_class: str
    cards: int
    start: datetime
    end: datetime

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start < end and start < self.end


def window_offer(policy: SitePolicy, pool: PoolSpec, start: datetime, end: datetime, now: datetime) -> tuple[int, str]:
    """The fewest cards the pool offers at any instant of [start, end), and how that was worked out: by
    following the offer schedule through the window, or (a schedule that changes too often to follow) the
    offer now (`fedgate.common.offers.lowest_offer`, the rule the twin's simulated centres book by too)."""
    return lowest_offer(
        policy.offers,
        policy.zone,
        pool.accelerator_class,
        pool.offered,
        pool.cards,
        (start, end),
        now,
        MAX_OFFER_STEPS,
    )


class SiteReservations:
    """The advance reservations this centre confirmed, by reservation id."""

    def __init__(self, site: str, policy: SitePolicy, pools: Mapping[str, PoolSpec]) -> None:
        self._site = site
        self._policy = policy
        self._pools = dict(pools)
        self._confirmed: dict[str, SiteReservation] = {}

    def all(self) -> list[SiteReservation]:
        return sorted(self._confirmed.values(), key=lambda b: (b.start, b.reservation_id))

    def reserve(self, command: Reserve, now: datetime) -> ReserveReply:
        """Confirm or refuse one reservation. A repeated request for a reservation already confirmed confirms again."""
        assert command.start is not None and command.end is not None
        # Windows that have closed hold nothing any more (their Abort may have been lost).
        self._confirmed = {k: b for k, b in self._confirmed.items() if b.end > now}
        rid = command.reservation_id
        if rid in self._confirmed:
            return ReserveReply(rid, accepted=True, free=self._room(self._confirmed[rid], now, skip=rid)[0])
        reservation = SiteReservation(
            rid, command.tenant, command.project, command.accelerator_class, command.cards, command.start, command.end
        )
        refusal, free = self._judge(reservation, now)
        if refusal:
            log.info("reservation %s refused: %s", rid, refusal)
            return ReserveReply(rid, accepted=False, reason=refusal, free=max(free, 0))
        self._confirmed[rid] = reservation
        log.info(
            "reservation %s confirmed: %d x %s for %s/%s from %s to %s",
            rid,
            reservation.cards,
            reservation.accelerator_class,
            reservation.tenant,
            reservation.project,
            reservation.start.isoformat(),
            reservation.end.isoformat(),
        )
        self._log_all()
        return ReserveReply(rid, accepted=True, free=free - reservation.cards)

    def release(self, reservation_id: str, reason: str = "") -> SiteReservation | None:
        """Forget a reservation (Abort); None when there was none."""
        reservation = self._confirmed.pop(reservation_id, None)
        if reservation is None:
            log.info("reservation %s: release ignored, not booked here", reservation_id)
            return None
        log.info("reservation %s released%s", reservation_id, f": {reason}" if reason else "")
        self._log_all()
        return reservation

    def _judge(self, reservation: SiteReservation, now: datetime) -> tuple[str, int]:
        """('' , cards free for it) when the centre takes it; otherwise why not (starting `site policy: `)."""
        policy, cls = self._policy, reservation.accelerator_class
        offered = ", ".join(sorted(self._pools)) or "nothing"
        return booking_refusal(
            policy.tenants,
            policy.projects,
            reservation.tenant,
            reservation.project,
            cls,
            reservation.cards,
            (lambda: self._room(reservation, now)) if cls in self._pools else None,
            f"site {self._site} has no pool of {cls or '(no class)'}; it offers {offered}",
        )

    def _room(self, reservation: SiteReservation, now: datetime, skip: str = "") -> tuple[int, int, str]:
        """(cards left for `reservation`, the lowest offer in its window, how that offer was worked out): the
        offer less the overlapping reservations, added up (never over-books, though two disjoint ones that
        both overlap this one both count)."""
        pool = self._pools[reservation.accelerator_class]
        offer, how = window_offer(self._policy, pool, reservation.start, reservation.end, now)
        taken = sum(
            b.cards
            for b in self._confirmed.values()
            if b.reservation_id != skip
            and b.accelerator_class == reservation.accelerator_class
            and b.overlaps(reservation.start, reservation.end)
        )
        return offer - taken, offer, how

    def _log_all(self) -> None:
        held = ", ".join(f"{b.reservation_id} ({b.cards} x {b.accelerator_class})" for b in self.all()) or "none"
        log.info("advance reservations at %s: %s", self._site, held)
