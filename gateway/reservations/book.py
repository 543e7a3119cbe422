"""The reservation book: advance reservations as vendors see them, from request to release.

Owns: the vendors' operations: create (idempotent by request id; members of the project's tenant or joint
project; the policy's word, then a plan over the sites), get, list and cancel with the same access rules as
jobs, and whether a job may name a reservation. The live reservations and their one writer are the ledger
(`gateway.reservations.ledger`); the confirmation round with the sites and the clock's changes are the rounds
(`gateway.reservations.rounds`), which this book asks to chase a new reservation and to finish a cancelled one;
planning is `gateway.reservations.plan` and what placement keeps is `gateway.reservations.capacity`, both pure.
It never speaks gRPC and reads time only from the injected clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from gateway.errors import AdmissionRejected, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from gateway.identity.principal import Principal
from gateway.jobs.admission import admit, refusal
from gateway.jobs.model import JobSpec, Reason
from gateway.policy.holder import PolicyHolder
from gateway.reservations.capacity import at, owns
from gateway.reservations.ledger import ReservationLedger
from gateway.reservations.model import (
    Reservation,
    ReservationRequest,
    ReservationState,
    check_request,
    new_reservation_id,
)
from gateway.reservations.plan import booked_cards, booking_allows, booking_spec, offered_usage, plan_booking
from gateway.reservations.rounds import ReservationRounds
from gateway.sites.registry import SiteRegistry
from gateway.store import Store
from gateway.store.reservations import ReservationPage
from gateway.trust import access
from gateway.trust.pages import Page, cut_to_bytes
from gateway.trust.pages import page_size as page_size_of
from gateway.trust.pagetokens import PageTokens
from gateway.trust.replay import fingerprint, replayed

log = logging.getLogger("fedgate.gateway.reservations")


class ReservationBook:
    def __init__(
        self,
        ledger: ReservationLedger,
        rounds: ReservationRounds,
        store: Store,
        policy: PolicyHolder,
        registry: SiteRegistry,
        clock: Callable[[], datetime],
        tokens: PageTokens,
    ) -> None:
        self._ledger = ledger
        self._rounds = rounds
        self._store = store
        self._policy = policy
        self._registry = registry
        self._clock = clock
        self._tokens = tokens  # seals page tokens

    # ---- vendors --------------------------------------------------------------------------------------------
    def create(self, caller: Principal, request: ReservationRequest, request_id: str = "") -> Reservation:
        policy, now = self._policy.policy, self._clock()
        if caller.kind == "user" and not request.tenant:
            request = replace(request, tenant=caller.tenant)
        # Authorised before anything is looked up by the request id (a key the caller chose): a site, a viewer
        # or another tenant's user learns nothing from it.
        access.require_submitter(caller, policy, request.tenant, request.project)
        if not request.tenant:
            raise InvalidArgument("an admin must name the tenant the reservation is for", reason="BAD_RESERVATION")
        request = replace(request, max_sites=request.max_sites or 1)
        digest = fingerprint(request) if request_id else ""
        if request_id:
            existing = self._store.reservation_by_request(request.tenant, request_id)
            if existing is not None:
                return self._replayed(caller, existing, digest, request_id)
        check_request(request, now)
        views = self._registry.views({})
        spec = booking_spec(request)
        usage = offered_usage(views)
        decision = admit(spec, caller, policy, self._policy.catalogue, request.start, usage)
        if not decision.admitted:
            raise refusal(decision, within="reservation.")
        plan = plan_booking(
            request.resources.cards,
            decision.classes,
            views,
            booked_cards(self._ledger.live.values(), request.start, request.end),
            booking_allows(policy, self._policy.catalogue, spec, request.start, usage),
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
            request_fingerprint=digest,
        )
        stored, created = self._store.create_reservation(reservation)
        if not created:  # another gateway (or call) made one under this request id meanwhile
            return self._replayed(caller, stored, digest, request_id)
        self._ledger.live[stored.reservation_id] = stored
        log.info(
            "reservation %s of %s/%s: asking %s",
            stored.reservation_id,
            stored.tenant,
            stored.project,
            ", ".join(f"{p.site} ({p.cards} x {p.accelerator_class})" for p in stored.parts),
        )
        stored = self._rounds.chase(stored, now)
        return stored

    def _replayed(self, caller: Principal, stored: Reservation, digest: str, request_id: str) -> Reservation:
        """AIP-155: the original for a retry of the same request the caller may see, REQUEST_ID_REUSED else."""
        visible = access.role_in(caller, self._policy.policy, stored.tenant, stored.project) is not None
        stored_digest = stored.request_fingerprint or fingerprint(stored.request)
        return replayed(
            self._ledger.live.get(stored.reservation_id, stored), stored_digest, digest, visible, request_id
        )

    def get(self, caller: Principal, reservation_id: str) -> Reservation:
        return self._visible(caller, reservation_id)[0]

    def _visible(self, caller: Principal, reservation_id: str) -> tuple[Reservation, str]:
        """The reservation and the caller's role for its project; not found (as for other tenants) without one."""
        reservation = self._ledger.lookup(reservation_id)
        role = None
        if reservation is not None:
            role = access.role_in(caller, self._policy.policy, reservation.tenant, reservation.project)
        if reservation is None or role is None:
            raise NotFound(f"reservation {reservation_id} not found", reason="RESERVATION_NOT_FOUND")
        return reservation, role

    def list(
        self,
        caller: Principal,
        project: str = "",
        page_size: int = 100,
        page_token: str = "",
        *,
        size_of: Callable[[Reservation], int] = lambda reservation: 0,
        budget: int = 0,
    ) -> ReservationPage:
        """One page of the reservations `caller` may see, in id (creation) order; with a `budget`, at most that
        many bytes of them as `size_of` (the transport's encoded size) counts them."""
        size = page_size_of(page_size)
        policy = self._policy.policy
        tenants = access.visible_tenants(caller, "")
        listing = "\n".join(("reservations", caller.uri, project))
        after = self._tokens.open(listing, page_token)  # sealed for this caller and filter: BAD_PAGE_TOKEN else
        joint = access.joint_projects_of(caller, policy) if tenants is not None else ()
        page = self._store.list_reservations(tenants, project, size, after, or_projects=joint)
        visible = tuple(
            self._ledger.live.get(r.reservation_id, r)
            for r in page.reservations
            if access.role_in(caller, policy, r.tenant, r.project) is not None
        )
        found = Page(visible, self._tokens.seal(listing, page.next_page_token))
        if budget:
            keys = [r.reservation_id for r in visible]
            found = cut_to_bytes(found, keys, size_of, budget, listing, tokens=self._tokens)
        return ReservationPage(found.items, found.next_page_token)

    def cancel(self, caller: Principal, reservation_id: str, reason: str = "") -> Reservation:
        reservation, role = self._visible(caller, reservation_id)
        if role not in access.ACTING_ROLES:
            raise PermissionDenied(
                f"{caller.uri} may read reservation {reservation_id} but not cancel it", reason="READ_ONLY"
            )
        if not reservation.state.live:
            return reservation
        why = f"cancelled by {caller.uri}" + (f": {reason}" if reason else "")
        return self._rounds.finish(reservation, ReservationState.CANCELLED, (Reason("reservation", "CANCELLED", why),))

    def check_job(self, spec: JobSpec) -> None:
        """A job may name only a reservation of its own project that is not over, and only one large enough."""
        if not spec.reservation:
            return
        reservation = self._ledger.lookup(spec.reservation)
        if reservation is None or not owns(reservation, spec, self._policy.policy.joint):
            raise AdmissionRejected(
                f"reservation {spec.reservation} does not exist for project {spec.tenant}/{spec.project}",
                reason="RESERVATION_NOT_FOUND",
            )
        over = self._ledger.kept(()).over(spec)
        if over:
            raise AdmissionRejected(f"{over}; submit the job without it", reason="RESERVATION_OVER")
        largest = max((p.cards for p in reservation.held_parts), default=0)
        if spec.resources.cards > largest:
            raise AdmissionRejected(
                f"the job needs {spec.resources.cards} cards; the largest part of reservation {spec.reservation} "
                f"holds {largest}",
                reason="RESERVATION_TOO_SMALL",
            )
