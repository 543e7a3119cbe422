"""Advance reservations as plain dataclasses: what a project asks to book, the booking, and its parts per site.

Owns: the nouns (`ReservationRequest`, `Reservation`, `ReservationPart`, `ReservationState`), the legal state
changes of a reservation, the id scheme (`book:` prefix, so that site replies can be told from gang holds),
and the two commands the gateway sends a site about a booking (`BookCommand`, `ReleaseCommand`). It does no
I/O and knows nothing of gRPC; `gateway.reservations.book` runs the flow, `gateway.reservations.plan` chooses sites.
"""

from __future__ import annotations

import enum
import itertools
import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from gateway.errors import InvalidArgument
from gateway.jobs.model import Reason, Resources

BOOKING_PREFIX = "book:"
# Why these bounds: a start a little in the past is clock skew between client and gateway, not a mistake;
# shorter windows than a minute are not worth a round of site confirmations; a month is the longest a job
# may run; a year ahead is as far as any centre plans its offer.
START_TOLERANCE = timedelta(minutes=1)
MIN_WINDOW = timedelta(minutes=1)
MAX_WINDOW = timedelta(days=30)
MAX_LEAD = timedelta(days=365)
MAX_SITES = 64
MAX_CARDS = 1_000_000
NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_sequence = itertools.count()


class ReservationState(enum.StrEnum):
    PENDING = "PENDING"  # waiting for the nominated sites to confirm
    CONFIRMED = "CONFIRMED"  # every part confirmed; the window has not started
    ACTIVE = "ACTIVE"  # inside the window: the cards are kept for the owning project
    ENDED = "ENDED"  # the window closed; the sites were told to release the cards
    CANCELLED = "CANCELLED"
    REFUSED = "REFUSED"  # no set of sites could confirm it

    @property
    def live(self) -> bool:
        """True while the reservation still holds (or may yet hold) cards at its sites."""
        return self in {ReservationState.PENDING, ReservationState.CONFIRMED, ReservationState.ACTIVE}


# Legal changes of a whole reservation; anything else is a bug in the caller.
TRANSITIONS: dict[ReservationState, frozenset[ReservationState]] = {
    ReservationState.PENDING: frozenset(
        {ReservationState.CONFIRMED, ReservationState.ACTIVE, ReservationState.REFUSED, ReservationState.CANCELLED}
    ),
    ReservationState.CONFIRMED: frozenset(
        {ReservationState.ACTIVE, ReservationState.ENDED, ReservationState.CANCELLED}
    ),
    ReservationState.ACTIVE: frozenset({ReservationState.ENDED, ReservationState.CANCELLED}),
    ReservationState.ENDED: frozenset(),
    ReservationState.CANCELLED: frozenset(),
    ReservationState.REFUSED: frozenset(),
}


def new_reservation_id(now: datetime) -> str:
    """`book:` and a time-sortable id, so that listing by id is listing by creation time."""
    millis = int(now.timestamp() * 1000)
    return f"{BOOKING_PREFIX}{millis:011x}{next(_sequence) % 4096:03x}{secrets.token_hex(2)}"


def is_booking(reservation_id: str) -> bool:
    return reservation_id.startswith(BOOKING_PREFIX)


@dataclass(frozen=True)
class ReservationRequest:
    """What a member of a project asks for: `resources.cards` cards of a class or capability, in [start, end)."""

    tenant: str
    project: str
    resources: Resources
    start: datetime
    end: datetime
    name: str = ""
    sites: tuple[str, ...] = ()  # the sites it may use; empty: any the policy allows
    max_sites: int = 1  # the cards may be split over at most this many sites


@dataclass(frozen=True)
class ReservationPart:
    """The share of a reservation one site holds. state: PENDING, CONFIRMED or REFUSED (with the site's reason)."""

    site: str
    accelerator_class: str
    cards: int
    state: ReservationState = ReservationState.PENDING
    reason: str = ""


@dataclass(frozen=True)
class Reservation:
    reservation_id: str
    request: ReservationRequest
    state: ReservationState
    create_time: datetime
    update_time: datetime
    # Every part ever asked for, in order: refused ones stay, so that the reservation shows where it tried.
    parts: tuple[ReservationPart, ...] = ()
    reasons: tuple[Reason, ...] = ()
    request_id: str = ""
    owner: str = ""  # the principal URI that made it
    classes: tuple[str, ...] = ()  # the classes the policy let it use when it was made (re-plans use them)
    request_fingerprint: str = ""  # digest of the request it was made from (`gateway.trust.replay`)

    @property
    def tenant(self) -> str:
        return self.request.tenant

    @property
    def project(self) -> str:
        return self.request.project

    @property
    def start(self) -> datetime:
        return self.request.start

    @property
    def end(self) -> datetime:
        return self.request.end

    @property
    def held_parts(self) -> tuple[ReservationPart, ...]:
        """The parts that hold (or are asked to hold) cards: not the refused ones."""
        return tuple(p for p in self.parts if p.state != ReservationState.REFUSED)

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start < end and start < self.end

    def evolve(self, **changes: object) -> Reservation:
        return replace(self, **changes)  # type: ignore[arg-type]


def can_transition(current: ReservationState, new: ReservationState) -> bool:
    return new in TRANSITIONS[current]


@dataclass(frozen=True)
class BookCommand:
    """Ask a site to confirm that it keeps `cards` cards of a class for `tenant`/`project` in [start, end)."""

    reservation_id: str
    tenant: str
    project: str
    accelerator_class: str
    cards: int
    start: datetime
    end: datetime


@dataclass(frozen=True)
class ReleaseCommand:
    """Tell a site that a booking is over (ended, cancelled, refused elsewhere): its cards are free again."""

    reservation_id: str
    reason: str = ""


def check_request(request: ReservationRequest, now: datetime) -> None:
    """Refuse a request that can never be booked, naming the field and the fix. The policy (tenant, project,
    classes, rules, quotas) is checked by the caller, with the policy in hand."""

    def bad(message: str) -> InvalidArgument:
        return InvalidArgument(message, reason="BAD_RESERVATION")

    if not request.project:
        raise bad("a reservation needs a project: name the project whose jobs will use the cards")
    for what, value in (("tenant", request.tenant), ("project", request.project), ("name", request.name)):
        if value and not NAME.fullmatch(value):
            raise bad(f"{what} {value!r} is not a name: use 1-63 lowercase letters, digits and '-'")
    if not 0 < request.resources.cards <= MAX_CARDS:
        raise bad(f"cards must be between 1 and {MAX_CARDS}, got {request.resources.cards}")
    if bool(request.resources.accelerator_class) == (request.resources.capability is not None):
        raise bad("name exactly one of an accelerator class or a capability (memory, BF16 throughput, stacks)")
    if request.start.tzinfo is None or request.end.tzinfo is None:
        raise bad("start and end must carry a time zone (e.g. 2026-12-01T08:00:00Z)")
    if request.end <= request.start:
        raise bad(f"the window ends ({request.end.isoformat()}) before it starts ({request.start.isoformat()})")
    if request.start < now - START_TOLERANCE:
        raise bad(f"the window starts in the past ({request.start.isoformat()}); book a window from now on")
    if request.start > now + MAX_LEAD:
        raise bad(f"the window starts more than {MAX_LEAD.days} days ahead; book closer to the time")
    length = request.end - request.start
    if length < MIN_WINDOW:
        raise bad(f"the window is {length.total_seconds():g} s long; book at least {MIN_WINDOW.seconds // 60} minute")
    if length > MAX_WINDOW:
        raise bad(f"the window is longer than {MAX_WINDOW.days} days; book several shorter ones")
    if not 1 <= request.max_sites <= MAX_SITES:
        raise bad(f"max_sites must be between 1 and {MAX_SITES}, got {request.max_sites}")
    if len(request.sites) > MAX_SITES or len(set(request.sites)) != len(request.sites):
        raise bad(f"sites must list each site once, at most {MAX_SITES} of them")
    for site in request.sites:
        if not NAME.fullmatch(site):
            raise bad(f"site {site!r} is not a site name")
