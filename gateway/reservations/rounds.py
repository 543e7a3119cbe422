"""The confirmation round and the clock of advance reservations: what the sites and time do to them.

Owns: asking each part's site (one Reserve per part, again when its agent reconnects), a site's answer (a
refusal or a silent site re-plans that part over the sites not asked yet, else the whole reservation is
REFUSED with the sites' reasons), the time-driven changes (ACTIVE at the start; ENDED at the end, releasing
the sites), and ending a reservation for good (`finish`). Every change is made durable through the ledger
(`gateway.reservations.ledger`) before anything is sent. Vendors' operations are `gateway.reservations.book`,
which asks the rounds to chase a new reservation and to finish a cancelled one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from gateway.jobs.model import Reason
from gateway.policy.holder import PolicyHolder
from gateway.reservations.capacity import at
from gateway.reservations.ledger import ReservationLedger
from gateway.reservations.model import (
    BookCommand,
    ReleaseCommand,
    Reservation,
    ReservationPart,
    ReservationState,
    can_transition,
)
from gateway.reservations.plan import booked_cards, booking_allows, booking_spec, offered_usage, plan_booking
from gateway.sites.registry import SiteRegistry

log = logging.getLogger("fedgate.gateway.reservations")
CONFIRM_TIMEOUT = timedelta(seconds=30)  # a site that has not answered by then is taken to refuse


class ReservationRounds:
    def __init__(
        self,
        ledger: ReservationLedger,
        registry: SiteRegistry,
        policy: PolicyHolder,
        clock: Callable[[], datetime],
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._ledger = ledger
        self._registry = registry
        self._policy = policy
        self._clock = clock
        self._on_change = on_change  # cards kept for a project changed: placement should look again
        self._asked: dict[tuple[str, str], datetime] = {}  # (reservation, site) -> when the site was asked

    # ---- sites ----------------------------------------------------------------------------------------------
    def site_replied(self, site: str, reservation_id: str, accepted: bool, reason: str) -> None:
        """A site's answer to a booking. `site` is the name from its certificate: it can speak only for its part."""
        reservation = self._ledger.live.get(reservation_id)
        part = None
        if reservation is not None:
            part = next((p for p in reservation.held_parts if p.site == site), None)
        if reservation is not None and part is not None and part.state == ReservationState.CONFIRMED:
            log.info("reservation %s: %s repeated its answer (accepted=%s)", reservation_id, site, accepted)
            return
        if reservation is None or part is None:
            log.info("reservation %s: late or unasked reply from %s (accepted=%s)", reservation_id, site, accepted)
            if accepted:  # it holds cards nobody wants: let them go
                self._registry.send(site, ReleaseCommand(reservation_id, "the reservation no longer needs this site"))
            return
        self._asked.pop((reservation_id, site), None)
        if not accepted:
            self._refused(reservation, site, reason or "no reason given")
            return
        parts = tuple(replace(p, state=ReservationState.CONFIRMED) if p is part else p for p in reservation.parts)
        reservation = reservation.evolve(parts=parts)
        if all(p.state == ReservationState.CONFIRMED for p in reservation.held_parts):
            where = ", ".join(f"{p.site} ({p.cards} x {p.accelerator_class})" for p in reservation.held_parts)
            confirmed = Reason("site", "CONFIRMED", f"confirmed by {where}")
            reservation = reservation.evolve(
                state=ReservationState.CONFIRMED, reasons=(*reservation.reasons, confirmed)
            )
            log.info("reservation %s confirmed: %s", reservation_id, where)
        self._ledger.save(reservation)
        self.tick()  # a window that has already started becomes ACTIVE at once

    def site_connected(self, site: str) -> None:
        """A site's agent (re)connected: it keeps bookings in memory only, so tell it again of every booking it
        confirmed (it confirms again; a changed mind is logged, the gateway's books hold) and ask at once for
        every part it has not answered (the question may have been lost with the old stream)."""
        for reservation in list(self._ledger.live.values()):
            for part in reservation.held_parts:
                if part.site != site:
                    continue
                self._asked.pop((reservation.reservation_id, site), None)
                if part.state == ReservationState.CONFIRMED:
                    self._registry.send(site, self._book_command(reservation, part))
            if any(p.site == site and p.state == ReservationState.PENDING for p in reservation.parts):
                self.chase(reservation, self._clock())

    # ---- time -----------------------------------------------------------------------------------------------
    def tick(self) -> bool:
        """Move reservations along with the clock: ACTIVE at the start, ENDED at the end (releasing the sites),
        chase silent sites. True when what placement keeps changed."""
        now, changed = self._clock(), False
        for reservation in list(self._ledger.live.values()):
            state = reservation.state
            if state == ReservationState.PENDING:
                if now >= reservation.end:
                    why = Reason("reservation", "WINDOW_PASSED", "the window closed before every site confirmed")
                    self.finish(reservation, ReservationState.REFUSED, (why,))
                else:
                    self.chase(reservation, now)
            elif now >= reservation.end:
                ended = Reason("reservation", "ENDED", f"the window closed at {at(reservation.end)}")
                self.finish(reservation, ReservationState.ENDED, (ended,))
                changed = True
            elif state == ReservationState.CONFIRMED and now >= reservation.start:
                started = Reason("reservation", "ACTIVE", f"the window opened at {at(reservation.start)}")
                self._ledger.save(
                    reservation.evolve(state=ReservationState.ACTIVE, reasons=(*reservation.reasons, started))
                )
                changed = True
        if changed:
            self._on_change()
        return changed

    # ---- internals ------------------------------------------------------------------------------------------
    def chase(self, reservation: Reservation, now: datetime) -> Reservation:
        """Ask each pending part's site (once), and give up on sites silent for CONFIRM_TIMEOUT."""
        for site in [p.site for p in reservation.parts if p.state == ReservationState.PENDING]:
            # Re-read each time: a refusal above may have re-planned (and chased) the parts, or ended it all.
            part = next((p for p in reservation.parts if p.site == site and p.state == ReservationState.PENDING), None)
            if part is None or not reservation.state.live:
                continue
            key = (reservation.reservation_id, site)
            asked = self._asked.get(key)
            if asked is None:
                if self._registry.send(site, self._book_command(reservation, part)):
                    self._asked[key] = now
                elif now - reservation.update_time >= CONFIRM_TIMEOUT:
                    reservation = self._refused(reservation, site, "the site is not connected")
            elif now - asked >= CONFIRM_TIMEOUT:
                silence = f"no reply within {CONFIRM_TIMEOUT.total_seconds():g} s"
                reservation = self._refused(reservation, site, silence)
        return reservation

    @staticmethod
    def _book_command(reservation: Reservation, part: ReservationPart) -> BookCommand:
        return BookCommand(
            reservation.reservation_id,
            reservation.tenant,
            reservation.project,
            part.accelerator_class,
            part.cards,
            reservation.start,
            reservation.end,
        )

    def _refused(self, reservation: Reservation, site: str, why: str) -> Reservation:
        """A site said no: plan its cards over the sites not asked yet, else refuse the whole reservation."""
        self._asked.pop((reservation.reservation_id, site), None)
        log.info("reservation %s: %s refused: %s", reservation.reservation_id, site, why)
        refused = next(p for p in reservation.parts if p.site == site and p.state == ReservationState.PENDING)
        parts = tuple(
            replace(p, state=ReservationState.REFUSED, reason=why) if p is refused else p for p in reservation.parts
        )
        reservation = reservation.evolve(parts=parts)
        request = reservation.request
        room = request.max_sites - len(reservation.held_parts)
        views = self._registry.views({})
        spec = booking_spec(request)
        plan = (
            plan_booking(
                refused.cards,
                reservation.classes,
                views,
                booked_cards(self._ledger.live.values(), request.start, request.end, skip=reservation.reservation_id),
                booking_allows(self._policy.policy, self._policy.catalogue, spec, request.start, offered_usage(views)),
                sites=request.sites,
                max_sites=max(room, 0),
                exclude={p.site for p in parts},
            )
            if room > 0
            else None
        )
        if plan is not None and plan.parts:
            reservation = self._ledger.save(reservation.evolve(parts=parts + plan.parts))
            return self.chase(reservation, self._clock())
        said = tuple(Reason("site", "SITE_REFUSED", f"{p.site}: {p.reason}", p.site) for p in parts if p.reason)
        if room <= 0:
            said += (Reason("reservation", "NO_SITES_LEFT", f"its {request.max_sites} site(s) are all taken"),)
        return self.finish(reservation, ReservationState.REFUSED, said + (plan.reasons if plan else ()))

    def finish(self, reservation: Reservation, state: ReservationState, why: tuple[Reason, ...]) -> Reservation:
        """End a live reservation for good and tell every site that holds (or was asked for) a part to let go."""
        assert can_transition(reservation.state, state), (reservation.state, state)
        message = why[-1].message if why else state.value.lower()
        for part in reservation.held_parts:
            self._asked.pop((reservation.reservation_id, part.site), None)
            self._registry.send(part.site, ReleaseCommand(reservation.reservation_id, message))
        finished = self._ledger.save(reservation.evolve(state=state, reasons=(*reservation.reasons, *why)))
        log.info("reservation %s %s: %s", reservation.reservation_id, state.value, message)
        self._on_change()  # kept cards come free, and jobs waiting for it must now fail
        return finished
