"""Advance bookings at this centre: the gateway asks whether the centre will keep N cards of a class for a
project in a future window; the centre says yes or no, by its own terms.

Owns: judging a booking (the centre accepts the tenant and project; the pool exists; the cards fit in what
the pool offers across the whole window, following its offer schedule, less the cards of the other bookings
it confirmed for overlapping windows), keeping the confirmed bookings in memory (idempotent by reservation
id, each one logged), and releasing them on Abort. It does not hold devices: during the window the gateway
keeps the cards for the project and launches its jobs as usual, and the agent checks each launch as always.
Bookings live in memory only: after a restart of the agent the gateway's books still hold, but this agent
no longer counts them against new bookings.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from agents.core.commands import Reserve
from agents.core.model import PoolSpec, ReserveReply
from agents.policy.terms import PREFIX, SitePolicy, effective_offer, next_offer_change
from fedgate.common.terms import project_accepted

log = logging.getLogger(__name__)

BOOKING_PREFIX = "book:"
"""Reservation ids of advance bookings start with this; gang holds use other ids."""
MAX_OFFER_STEPS = 2000
"""Offer changes followed across a window (a month of hourly windows fits); past this the offer now decides."""


def is_booking(reservation_id: str) -> bool:
    return reservation_id.startswith(BOOKING_PREFIX)


@dataclass(frozen=True)
class Booking:
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
    offer now."""
    lowest, at, steps = effective_offer(policy, pool, start), start, 0
    while (change := next_offer_change(policy, at)) is not None and change < end:
        steps += 1
        if steps > MAX_OFFER_STEPS:
            return effective_offer(policy, pool, now), "offered now (its schedule is too busy to follow this window)"
        lowest, at = min(lowest, effective_offer(policy, pool, change)), change
    if not policy.offers.get(pool.accelerator_class):
        return lowest, "offered"
    return lowest, "offered through the whole window by its offer schedule"


class Bookings:
    """The bookings this centre confirmed, by reservation id."""

    def __init__(self, site: str, policy: SitePolicy, pools: Mapping[str, PoolSpec]) -> None:
        self._site = site
        self._policy = policy
        self._pools = dict(pools)
        self._booked: dict[str, Booking] = {}

    def all(self) -> list[Booking]:
        return sorted(self._booked.values(), key=lambda b: (b.start, b.reservation_id))

    def book(self, command: Reserve, now: datetime) -> ReserveReply:
        """Confirm or refuse one booking. A repeated request for a booking already confirmed confirms again."""
        assert command.start is not None and command.end is not None
        # Windows that have closed hold nothing any more (their Abort may have been lost).
        self._booked = {k: b for k, b in self._booked.items() if b.end > now}
        rid = command.reservation_id
        if rid in self._booked:
            return ReserveReply(rid, accepted=True, free=self._room(self._booked[rid], now, skip=rid)[0])
        booking = Booking(
            rid, command.tenant, command.project, command.accelerator_class, command.cards, command.start, command.end
        )
        refusal, free = self._judge(booking, now)
        if refusal:
            log.info("booking %s refused: %s", rid, refusal)
            return ReserveReply(rid, accepted=False, reason=refusal, free=max(free, 0))
        self._booked[rid] = booking
        log.info(
            "booking %s confirmed: %d x %s for %s/%s from %s to %s",
            rid,
            booking.cards,
            booking.accelerator_class,
            booking.tenant,
            booking.project,
            booking.start.isoformat(),
            booking.end.isoformat(),
        )
        self._log_all()
        return ReserveReply(rid, accepted=True, free=free - booking.cards)

    def release(self, reservation_id: str, reason: str = "") -> Booking | None:
        """Forget a booking (Abort); None when there was none."""
        booking = self._booked.pop(reservation_id, None)
        if booking is None:
            log.info("booking %s: release ignored, not booked here", reservation_id)
            return None
        log.info("booking %s released%s", reservation_id, f": {reason}" if reason else "")
        self._log_all()
        return booking

    def _judge(self, booking: Booking, now: datetime) -> tuple[str, int]:
        """('' , cards free for it) when the centre takes it; otherwise why not (starting `site policy: `)."""
        policy, cls = self._policy, booking.accelerator_class
        if policy.tenants and booking.tenant not in policy.tenants:
            return f"{PREFIX}tenant {booking.tenant or '(none)'} is not accepted here", 0
        if not project_accepted(policy.projects, booking.tenant, booking.project):
            return f"{PREFIX}project {booking.tenant}/{booking.project} is not accepted here", 0
        if cls not in self._pools:
            offered = ", ".join(sorted(self._pools)) or "nothing"
            return f"site {self._site} has no pool of {cls or '(no class)'}; it offers {offered}", 0
        free, offer, how = self._room(booking, now)
        if booking.cards > free:
            taken = offer - free
            others = f"; {taken} of them are booked for overlapping windows" if taken else ""
            return f"{PREFIX}{cls}: {offer} cards are {how}{others}; this booking needs {booking.cards}", free
        return "", free

    def _room(self, booking: Booking, now: datetime, skip: str = "") -> tuple[int, int, str]:
        """(cards left for `booking`, the lowest offer in its window, how that offer was worked out): the
        offer less the overlapping bookings, added up (never over-books, though two disjoint bookings that
        both overlap this one both count)."""
        pool = self._pools[booking.accelerator_class]
        offer, how = window_offer(self._policy, pool, booking.start, booking.end, now)
        taken = sum(
            b.cards
            for b in self._booked.values()
            if b.reservation_id != skip
            and b.accelerator_class == booking.accelerator_class
            and b.overlaps(booking.start, booking.end)
        )
        return offer - taken, offer, how

    def _log_all(self) -> None:
        held = ", ".join(f"{b.reservation_id} ({b.cards} x {b.accelerator_class})" for b in self.all()) or "none"
        log.info("bookings at %s: %s", self._site, held)
