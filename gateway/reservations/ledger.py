"""The reservation ledger: the live advance reservations in memory over the store, and the one way to change one.

Owns: the live reservations (loaded from the store at start), the recently finished ones kept for the
scheduler's look-ups, `lookup` by id, `save` (durable first, then in memory: the only writer of a reservation),
and `kept`, what placement keeps for the live reservations at one instant. The vendors' operations
(`gateway.reservations.book`) and the rounds with the sites and the clock (`gateway.reservations.rounds`) both
write through it. It never speaks gRPC and reads time only from the injected clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from gateway.jobs.model import Job
from gateway.policy.holder import PolicyHolder
from gateway.reservations.capacity import ReservedCapacity
from gateway.reservations.model import Reservation
from gateway.store import Store

FINISHED_KEPT = 1000  # reservations over, kept in memory for the scheduler's look-ups


class ReservationLedger:
    def __init__(self, store: Store, policy: PolicyHolder, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock
        self.live: dict[str, Reservation] = {r.reservation_id: r for r in store.live_reservations()}
        self._finished: dict[str, Reservation] = {}

    def lookup(self, reservation_id: str) -> Reservation | None:
        found = self.live.get(reservation_id) or self._finished.get(reservation_id)
        return found or self._store.get_reservation(reservation_id)

    def kept(self, holding: Iterable[Job]) -> ReservedCapacity:
        """What placement keeps for the live reservations now, given the jobs holding cards (the joint
        projects are the policy's in force)."""
        return ReservedCapacity(self.live.values(), holding, self.lookup, self._policy.policy.joint)

    def save(self, reservation: Reservation) -> Reservation:
        """Durable first, then in the ledger. Returns the reservation as saved (its update time set)."""
        reservation = reservation.evolve(update_time=self._clock())
        self._store.save_reservation(reservation)
        if reservation.state.live:
            self.live[reservation.reservation_id] = reservation
        else:
            self.live.pop(reservation.reservation_id, None)
            self._finished[reservation.reservation_id] = reservation
            while len(self._finished) > FINISHED_KEPT:
                del self._finished[next(iter(self._finished))]
        return reservation
