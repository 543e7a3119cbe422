"""The reservation book: advance reservations from request to release, as vendors and sites see them.

Owns: create (idempotent by request id; members of the project's tenant or joint project; the policy's word
and a plan over the sites), get, list and cancel with the same access rules as jobs, the confirmation round
with the sites (one Reserve per part; a refusal or a silent site re-plans that part elsewhere, else the whole
reservation is REFUSED with the sites' reasons), the time-driven changes (ACTIVE at the start, ENDED at the
end, both releasing what is unused at the sites), and every change made durable before it is announced.
Planning is `gateway.reservationplan`, what placement keeps is `gateway.reservationhold`: both pure.
It never speaks gRPC and reads time only from the injected clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from gateway import access
from gateway.admission import admit
from gateway.errors import AdmissionRejected, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from gateway.identity.principal import Principal
from gateway.model import Job, JobSpec, Reason, SiteView, StackRun
from gateway.placement import OptionFilter
from gateway.policy import FederationPolicy
from gateway.policy.engine import option_verdict
from gateway.policy.holder import PolicyHolder
from gateway.policy.quotas import Usage
from gateway.reservationhold import ReservationHold, at, owns
from gateway.reservationmodel import (
    BookCommand,
    ReleaseCommand,
    Reservation,
    ReservationRequest,
    ReservationState,
    can_transition,
    check_request,
    new_reservation_id,
)
from gateway.reservationplan import booked_cards, plan_booking
from gateway.sites import SiteRegistry
from gateway.store import Store
from gateway.store.reservations import ReservationPage

log = logging.getLogger("fedgate.gateway.reservations")
CONFIRM_TIMEOUT = timedelta(seconds=30)  # a site that has not answered by then is taken to refuse
MAX_PAGE_SIZE = 500
FINISHED_KEPT = 1000  # reservations over, kept in memory for the scheduler's look-ups


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


class ReservationBook:
    def __init__(
        self,
        store: Store,
        policy: PolicyHolder,
        registry: SiteRegistry,
        clock: Callable[[], datetime],
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.registry = registry
        self.clock = clock
        self.on_change = on_change  # cards kept for a project changed: placement should look again
        self.live: dict[str, Reservation] = {r.reservation_id: r for r in store.live_reservations()}
        self._finished: dict[str, Reservation] = {}
        self._asked: dict[tuple[str, str], datetime] = {}  # (reservation, site) -> when the site was asked

    def lookup(self, reservation_id: str) -> Reservation | None:
        found = self.live.get(reservation_id) or self._finished.get(reservation_id)
        return found or self.store.get_reservation(reservation_id)

    def hold(self, holding: Iterable[Job]) -> ReservationHold:
        """What placement keeps for the active reservations now, given the jobs holding cards."""
        return ReservationHold(self.live.values(), holding, self.lookup, self.policy.policy.joint)

    # ---- vendors --------------------------------------------------------------------------------------------
    def create(self, caller: Principal, request: ReservationRequest, request_id: str = "") -> Reservation:
        policy, now = self.policy.policy, self.clock()
        if caller.kind == "user" and not request.tenant:
            request = replace(request, tenant=caller.tenant)
        if not request.tenant:
            raise InvalidArgument("an admin must name the tenant the reservation is for", reason="BAD_RESERVATION")
        if caller.kind == "user" and caller.tenant == request.tenant and request.tenant in policy.tenants:
            access.require_member(caller, policy, request.tenant, request.project)
        if request_id:
            existing = self.store.reservation_by_request(request.tenant, request_id)
            if existing is not None:
                return existing
        request = replace(request, max_sites=request.max_sites or 1)
        check_request(request, now)
        views = self.registry.views({})
        spec = booking_spec(request)
        usage = _offered(views)
        decision = admit(spec, caller, policy, self.policy.catalogue, request.start, usage)
        if not decision.admitted:
            reason = decision.reasons[0]
            raise AdmissionRejected(reason.message, reason=reason.code)
        plan = plan_booking(
            request.resources.cards,
            decision.classes,
            views,
            booked_cards(self.live.values(), request.start, request.end),
            self._allows(spec, request.start, policy, usage),
            sites=request.sites,
            max_sites=request.max_sites,
        )
        if not plan.parts:
            why = "; ".join(r.message for r in plan.reasons)
            raise FailedPrecondition(
                f"no site can book {request.resources.cards} cards for {at(request.start)}-{at(request.end)}: {why}",
                reason="NO_CAPACITY_FOR_RESERVATION",
            )
        reservation = Reservation(
            new_reservation_id(now),
            request,
            ReservationState.PENDING,
            now,
            now,
            parts=plan.parts,
            reasons=decision.reasons,
            request_id=request_id,
            owner=caller.uri,
            classes=decision.classes,
        )
        stored, created = self.store.create_reservation(reservation)
        if created:
            self.live[stored.reservation_id] = stored
            log.info(
                "reservation %s of %s/%s: asking %s",
                stored.reservation_id,
                stored.tenant,
                stored.project,
                ", ".join(f"{p.site} ({p.cards} x {p.accelerator_class})" for p in stored.parts),
            )
            stored = self._chase(stored, now)
        return stored

    def get(self, caller: Principal, reservation_id: str) -> Reservation:
        return self._visible(caller, reservation_id)[0]

    def _visible(self, caller: Principal, reservation_id: str) -> tuple[Reservation, str]:
        """The reservation and the caller's role for its project; not found (as for other tenants) without one."""
        reservation = self.lookup(reservation_id)
        role = None
        if reservation is not None:
            role = access.role_in(caller, self.policy.policy, reservation.tenant, reservation.project)
        if reservation is None or role is None:
            raise NotFound(f"reservation {reservation_id} not found", reason="RESERVATION_NOT_FOUND")
        return reservation, role

    def list(self, caller: Principal, project: str = "", page_size: int = 100, page_token: str = "") -> ReservationPage:
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        policy = self.policy.policy
        tenants = access.visible_tenants(caller, "")
        joint = access.joint_projects_of(caller, policy) if tenants is not None else ()
        size = min(page_size or 100, MAX_PAGE_SIZE)
        page = self.store.list_reservations(tenants, project, size, page_token, or_projects=joint)
        visible = tuple(
            self.live.get(r.reservation_id, r)
            for r in page.reservations
            if access.role_in(caller, policy, r.tenant, r.project) is not None
        )
        return ReservationPage(visible, page.next_page_token)

    def cancel(self, caller: Principal, reservation_id: str, reason: str = "") -> Reservation:
        reservation, role = self._visible(caller, reservation_id)
        if role not in access.ACTING_ROLES:
            raise PermissionDenied(
                f"{caller.uri} may read reservation {reservation_id} but not cancel it", reason="READ_ONLY"
            )
        if not reservation.state.live:
            return reservation
        why = f"cancelled by {caller.uri}" + (f": {reason}" if reason else "")
        return self._finish(reservation, ReservationState.CANCELLED, (Reason("reservation", "CANCELLED", why),))

    def check_job(self, spec: JobSpec) -> None:
        """A job may name only a reservation of its own project that is not over, and only one large enough."""
        if not spec.reservation:
            return
        reservation = self.lookup(spec.reservation)
        if reservation is None or not owns(reservation, spec, self.policy.policy.joint):
            raise AdmissionRejected(
                f"reservation {spec.reservation} does not exist for project {spec.tenant}/{spec.project}",
                reason="RESERVATION_NOT_FOUND",
            )
        over = self.hold(()).over(spec)
        if over:
            raise AdmissionRejected(f"{over}; submit the job without it", reason="RESERVATION_OVER")
        largest = max((p.cards for p in reservation.held_parts), default=0)
        if spec.resources.cards > largest:
            raise AdmissionRejected(
                f"the job needs {spec.resources.cards} cards; the largest part of reservation {spec.reservation} "
                f"holds {largest}",
                reason="RESERVATION_TOO_SMALL",
            )

    # ---- sites ----------------------------------------------------------------------------------------------
    def site_replied(self, site: str, reservation_id: str, accepted: bool, reason: str) -> None:
        """A site's answer to a booking. `site` is the name from its certificate: it can speak only for its part."""
        reservation = self.live.get(reservation_id)
        part = None
        if reservation is not None:
            part = next((p for p in reservation.held_parts if p.site == site), None)
        if reservation is not None and part is not None and part.state == ReservationState.CONFIRMED:
            log.info("reservation %s: %s repeated its answer (accepted=%s)", reservation_id, site, accepted)
            return
        if reservation is None or part is None:
            log.info("reservation %s: late or unasked reply from %s (accepted=%s)", reservation_id, site, accepted)
            if accepted:  # it holds cards nobody wants: let them go
                self.registry.send(site, ReleaseCommand(reservation_id, "the reservation no longer needs this site"))
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
        self._save(reservation)
        self.tick()  # a window that has already started becomes ACTIVE at once

    # ---- time -----------------------------------------------------------------------------------------------
    def tick(self) -> bool:
        """Move reservations along with the clock: ACTIVE at the start, ENDED at the end (releasing the sites),
        chase silent sites. True when what placement keeps changed."""
        now, changed = self.clock(), False
        for reservation in list(self.live.values()):
            state = reservation.state
            if state == ReservationState.PENDING:
                if now >= reservation.end:
                    why = Reason("reservation", "WINDOW_PASSED", "the window closed before every site confirmed")
                    self._finish(reservation, ReservationState.REFUSED, (why,))
                else:
                    self._chase(reservation, now)
            elif now >= reservation.end:
                ended = Reason("reservation", "ENDED", f"the window closed at {at(reservation.end)}")
                self._finish(reservation, ReservationState.ENDED, (ended,))
                changed = True
            elif state == ReservationState.CONFIRMED and now >= reservation.start:
                started = Reason("reservation", "ACTIVE", f"the window opened at {at(reservation.start)}")
                self._save(reservation.evolve(state=ReservationState.ACTIVE, reasons=(*reservation.reasons, started)))
                changed = True
        if changed:
            self.on_change()
        return changed

    # ---- internals ------------------------------------------------------------------------------------------
    def _chase(self, reservation: Reservation, now: datetime) -> Reservation:
        """Ask each pending part's site (once), and give up on sites silent for CONFIRM_TIMEOUT."""
        for site in [p.site for p in reservation.parts if p.state == ReservationState.PENDING]:
            # Re-read each time: a refusal above may have re-planned (and chased) the parts, or ended it all.
            part = next((p for p in reservation.parts if p.site == site and p.state == ReservationState.PENDING), None)
            if part is None or not reservation.state.live:
                continue
            key = (reservation.reservation_id, site)
            asked = self._asked.get(key)
            if asked is None:
                command = BookCommand(
                    reservation.reservation_id,
                    reservation.tenant,
                    reservation.project,
                    part.accelerator_class,
                    part.cards,
                    reservation.start,
                    reservation.end,
                )
                if self.registry.send(site, command):
                    self._asked[key] = now
                elif now - reservation.update_time >= CONFIRM_TIMEOUT:
                    reservation = self._refused(reservation, site, "the site is not connected")
            elif now - asked >= CONFIRM_TIMEOUT:
                silence = f"no reply within {CONFIRM_TIMEOUT.total_seconds():g} s"
                reservation = self._refused(reservation, site, silence)
        return reservation

    def _refused(self, reservation: Reservation, site: str, why: str) -> Reservation:
        """A site said no: plan its cards over the sites not asked yet, else refuse the whole reservation."""
        self._asked.pop((reservation.reservation_id, site), None)
        log.info("reservation %s: %s refused: %s", reservation.reservation_id, site, why)
        refused = next(p for p in reservation.parts if p.site == site and p.state == ReservationState.PENDING)
        parts = tuple(
            replace(p, state=ReservationState.REFUSED, reason=why) if p is refused else p for p in reservation.parts
        )
        reservation = reservation.evolve(parts=parts)
        request, policy = reservation.request, self.policy.policy
        room = request.max_sites - len(reservation.held_parts)
        views = self.registry.views({})
        spec = booking_spec(request)
        plan = (
            plan_booking(
                refused.cards,
                reservation.classes,
                views,
                booked_cards(self.live.values(), request.start, request.end, skip=reservation.reservation_id),
                self._allows(spec, request.start, policy, _offered(views)),
                sites=request.sites,
                max_sites=max(room, 0),
                exclude={p.site for p in parts},
            )
            if room > 0
            else None
        )
        if plan is not None and plan.parts:
            reservation = self._save(reservation.evolve(parts=parts + plan.parts))
            return self._chase(reservation, self.clock())
        said = tuple(Reason("site", "SITE_REFUSED", f"{p.site}: {p.reason}", p.site) for p in parts if p.reason)
        if room <= 0:
            said += (Reason("reservation", "NO_SITES_LEFT", f"its {request.max_sites} site(s) are all taken"),)
        return self._finish(reservation, ReservationState.REFUSED, said + (plan.reasons if plan else ()))

    def _finish(self, reservation: Reservation, state: ReservationState, why: tuple[Reason, ...]) -> Reservation:
        """End a live reservation for good and tell every site that holds (or was asked for) a part to let go."""
        assert can_transition(reservation.state, state), (reservation.state, state)
        message = why[-1].message if why else state.value.lower()
        for part in reservation.held_parts:
            self._asked.pop((reservation.reservation_id, part.site), None)
            self.registry.send(part.site, ReleaseCommand(reservation.reservation_id, message))
        was_active = reservation.state == ReservationState.ACTIVE
        finished = self._save(reservation.evolve(state=state, reasons=(*reservation.reasons, *why)))
        log.info("reservation %s %s: %s", reservation.reservation_id, state.value, message)
        if was_active:
            self.on_change()
        return finished

    def _save(self, reservation: Reservation) -> Reservation:
        """Durable first, then in the book."""
        reservation = reservation.evolve(update_time=self.clock())
        self.store.save_reservation(reservation)
        if reservation.state.live:
            self.live[reservation.reservation_id] = reservation
        else:
            self.live.pop(reservation.reservation_id, None)
            self._finished[reservation.reservation_id] = reservation
            while len(self._finished) > FINISHED_KEPT:
                del self._finished[next(iter(self._finished))]
        return reservation

    def _allows(self, spec: JobSpec, start: datetime, policy: FederationPolicy, usage: Usage) -> OptionFilter:
        """The policy's word on each (site, class), judged at the window's `start`, and the centre's own terms.
        The centre's job-size limit is left out: it limits the jobs that run in the booking, not the booking."""
        catalogue = self.policy.catalogue

        def allows(site: SiteView, cls: str) -> Reason | None:
            if site.terms is not None:
                refusal = replace(site.terms, max_job_cards=0).refusal(spec, "")
                if refusal:
                    return Reason("offers", "SITE_TERMS", f"{site.name}'s own policy: {refusal}", site.name)
            return option_verdict(policy, catalogue, spec, start, usage, site.name, cls)

        return allows


def _offered(views: list[SiteView]) -> Usage:
    """Usage with nothing held: a booking is judged on its own size; share quotas follow what is offered."""
    offered: dict[str, int] = {}
    for view in views:
        if view.connected and not view.draining:
            for pool in view.pools:
                offered[pool.accelerator_class] = offered.get(pool.accelerator_class, 0) + pool.offered
    return Usage(offered=offered)
