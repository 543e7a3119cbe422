"""What placement keeps for reservations: the reserved cards a project has not used yet, at one instant.

Owns: the pure rules that make a reservation hold during its window. Other projects' jobs see each part's
site with the part's unused cards withheld (added to the leases); jobs of the owning project see them free
(and the cycle tries those few sites first, so a project uses what it reserved before anything else); a job
that names a reservation runs only on its parts, only while it is ACTIVE and only within the part's cards,
and waits with a reason ("reservation R starts at T") before. It also says why a job naming a
reservation can never run (it ended, was cancelled or refused). No I/O and no clock: the scheduler builds
one `ReservedCapacity` per cycle (or per explanation) from the book and the jobs holding cards.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from fedgate.common.reasons import ReasonCode
from gateway.jobs.model import Job, JobSpec, Placement, Reason
from gateway.placement.place import OptionFilter
from gateway.reservations.model import Reservation, ReservationState
from gateway.sites.model import SiteView

Leases = dict[str, dict[str, int]]  # site -> class -> cards


def at(moment: datetime) -> str:
    """A time as reasons print it: ISO-8601 in UTC to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Withheld:
    """Cards of one part of an active reservation that its project is not using now."""

    reservation: Reservation
    site: str
    accelerator_class: str
    cards: int


def owns(reservation: Reservation, spec: JobSpec, joint: Collection[str]) -> bool:
    """Is the job of the reservation's project? In a joint project, whichever tenant submitted it."""
    if spec.project != reservation.project:
        return False
    return spec.tenant == reservation.tenant or reservation.project in joint


class ReservedCapacity:
    """The reservations as placement sees them at one instant."""

    def __init__(
        self,
        active: Iterable[Reservation],
        holding: Iterable[Job],
        lookup: Callable[[str], Reservation | None],
        joint: Collection[str] = (),
    ) -> None:
        self._lookup = lookup
        self._joint = joint
        self._active = [r for r in active if r.state == ReservationState.ACTIVE]
        # Cards the owning project's jobs hold per (reservation, site, class): jobs naming the reservation, and
        # jobs naming none (they may use the reserved cards too). Only the parts' (site, class) count.
        used: dict[tuple[str, str, str], int] = defaultdict(int)
        named: dict[tuple[str, str, str], int] = defaultdict(int)
        if self._active:
            for job in holding:
                for reservation in self._active:
                    mine = owns(reservation, job.spec, joint)
                    if not mine or job.spec.reservation not in ("", reservation.reservation_id):
                        continue
                    for p in job.placements:
                        used[(reservation.reservation_id, p.site, p.accelerator_class)] += p.cards
                        if job.spec.reservation:
                            named[(reservation.reservation_id, p.site, p.accelerator_class)] += p.cards
        self._named = named
        self.withheld = tuple(
            Withheld(r, part.site, part.accelerator_class, unused)
            for r in self._active
            for part in r.held_parts
            if (unused := part.cards - used[(r.reservation_id, part.site, part.accelerator_class)]) > 0
        )

    def took(self, spec: JobSpec, placement: Placement) -> None:
        """A job naming a reservation was just placed in this cycle: its part has that much less room."""
        if spec.reservation:
            self._named[(spec.reservation, placement.site, placement.accelerator_class)] += placement.cards

    def withhold(self, leases: Leases) -> Leases:
        """`leases` (changed in place and returned) with every part's unused cards added: what others see."""
        for w in self.withheld:
            leases[w.site][w.accelerator_class] += w.cards
        return leases

    def concerns(self, spec: JobSpec) -> bool:
        """Does this job see the sites differently from everyone else (it names a reservation, or its project
        has reserved cards it is not using)? Jobs that do not are placed over the withheld view as usual."""
        return bool(spec.reservation) or any(owns(w.reservation, spec, self._joint) for w in self.withheld)

    def views_for(self, spec: JobSpec, views: Iterable[SiteView]) -> list[SiteView]:
        """The sites as this job sees them: its own project's unused reserved cards given back; only the
        parts' sites for a job naming a reservation. For explanations: it looks at every site."""
        own = self._own(spec)
        part_sites = self._part_sites(spec)
        return [self._give_back(view, own) for view in views if part_sites is None or view.name in part_sites]

    def reserved_views(self, spec: JobSpec, views: Mapping[str, SiteView]) -> list[SiteView]:
        """Only the sites where this job may use reserved cards, as it sees them: a named reservation's parts,
        or where its project's reservations keep unused cards. Cheap (a few sites), for the scheduling cycle,
        which places the job over every other site the usual way when these have no room."""
        own = self._own(spec)
        part_sites = self._part_sites(spec)
        names = part_sites if part_sites is not None else set(own)
        return [self._give_back(views[name], own) for name in sorted(names) if name in views]

    def _own(self, spec: JobSpec) -> Leases:
        own: Leases = defaultdict(lambda: defaultdict(int))
        for w in self.withheld:
            if owns(w.reservation, spec, self._joint):
                own[w.site][w.accelerator_class] += w.cards
        return own

    def _part_sites(self, spec: JobSpec) -> set[str] | None:
        """The sites of the reservation a job names; None for a job that names none."""
        if not spec.reservation:
            return None
        named = self._lookup(spec.reservation)
        return {p.site for p in named.held_parts} if named is not None else set()

    @staticmethod
    def _give_back(view: SiteView, own: Leases) -> SiteView:
        mine = own.get(view.name)
        if not mine:
            return view
        return replace(view, leased=tuple((c, max(0, n - mine.get(c, 0))) for c, n in view.leased))

    def allows(self, spec: JobSpec, allows: OptionFilter) -> OptionFilter:
        """The policy's filter, and for a job naming a reservation: only its parts, only in its window."""
        if not spec.reservation:
            return allows
        reservation = self._lookup(spec.reservation)

        def inside(site: SiteView, cls: str) -> Reason | None:
            if reservation is None or reservation.state != ReservationState.ACTIVE:
                return self.waiting(spec, reservation, site.name)
            part = next((p for p in reservation.held_parts if (p.site, p.accelerator_class) == (site.name, cls)), None)
            if part is None:
                return Reason(
                    "reservation",
                    ReasonCode.OUTSIDE_RESERVATION,
                    f"{cls} at {site.name} is not part of reservation {reservation.reservation_id}",
                    site.name,
                )
            left = part.cards - self._named[(reservation.reservation_id, site.name, cls)]
            if spec.resources.cards > left:
                return Reason(
                    "reservation",
                    ReasonCode.RESERVATION_FULL,
                    f"reservation {reservation.reservation_id} holds {part.cards} {cls} cards at {site.name}, "
                    f"{left} of them free of its jobs; the job needs {spec.resources.cards}",
                    site.name,
                )
            return allows(site, cls)

        return inside

    def waiting(self, spec: JobSpec, reservation: Reservation | None, site: str = "") -> Reason:
        """Why a job naming a reservation that is not ACTIVE waits (or can never run)."""
        name = spec.reservation
        if reservation is None:
            return Reason("reservation", ReasonCode.RESERVATION_NOT_FOUND, f"reservation {name} does not exist", site)
        if reservation.state in (ReservationState.PENDING, ReservationState.CONFIRMED):
            pending = reservation.state == ReservationState.PENDING
            unconfirmed = " (its sites have not all confirmed yet)" if pending else ""
            message = f"reservation {name} starts at {at(reservation.start)}{unconfirmed}"
            return Reason("reservation", ReasonCode.RESERVATION_NOT_STARTED, message, site)
        return Reason(
            "reservation", ReasonCode.RESERVATION_OVER, self.over(spec) or f"reservation {name} is over", site
        )

    def over(self, spec: JobSpec) -> str:
        """Why a job naming a reservation can never run there ('' when it still may)."""
        if not spec.reservation:
            return ""
        reservation = self._lookup(spec.reservation)
        if reservation is None:
            return f"reservation {spec.reservation} does not exist"
        if reservation.state == ReservationState.ENDED:
            return f"reservation {spec.reservation} ended at {at(reservation.end)}"
        if reservation.state == ReservationState.CANCELLED:
            return f"reservation {spec.reservation} was cancelled"
        if reservation.state == ReservationState.REFUSED:
            return f"reservation {spec.reservation} was refused by its sites"
        return ""

    def notes(self, spec: JobSpec) -> tuple[Reason, ...]:
        """For a job of another project: that cards it could use are kept for other projects' reservations.

        Only that: a job's reasons are read by everyone who may see the job, and other projects' bookings are
        theirs, so the note names no reservation, tenant, project, site, card count or window (`docs/security.md`,
        "What a reason says")."""
        wanted = spec.resources.accelerator_class
        kept = sorted(
            {
                w.accelerator_class
                for w in self.withheld
                if not owns(w.reservation, spec, self._joint) and w.accelerator_class == (wanted or w.accelerator_class)
            }
        )
        if not kept:
            return ()
        message = (
            f"some {', '.join(kept)} cards are kept for other projects' reservations; the job waits for other "
            "capacity or for those windows to end"
        )
        return (Reason("reservation", ReasonCode.RESERVED, message),)
