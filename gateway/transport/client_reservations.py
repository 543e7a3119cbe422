"""The client's advance-reservation calls: book cards ahead, read, list and cancel bookings.

Owns: one method per ReservationService RPC, plain dataclasses in and out (paging followed for the caller). It
does not own the channel or the translation of a refused call (`gateway.transport.client_channel`). Users
import it as part of `gateway.transport.client.FederationClient`.
"""

from __future__ import annotations

import uuid

from fedgate.v1 import reservation_service_pb2 as reservation_pb
from gateway.reservations.model import Reservation, ReservationRequest
from gateway.transport.client_channel import ClientChannel
from gateway.transport.reservation_convert import request_to_proto, reservation_from_proto


class ReservationCalls(ClientChannel):
    """The ReservationService half of `FederationClient`."""

    def create_reservation(self, request: ReservationRequest, request_id: str | None = None) -> Reservation:
        """Book cards ahead. Reusing a request_id returns the reservation the first call made (safe to retry)."""
        call = reservation_pb.CreateReservationRequest(
            request_id=request_id or uuid.uuid4().hex, reservation=request_to_proto(request)
        )
        return reservation_from_proto(self._call(self._reservations.CreateReservation, call).reservation)

    def get_reservation(self, reservation_id: str) -> Reservation:
        call = reservation_pb.GetReservationRequest(reservation_id=reservation_id)
        return reservation_from_proto(self._call(self._reservations.GetReservation, call).reservation)

    def list_reservations(self, project: str = "", limit: int = 1000) -> list[Reservation]:
        """Reservations the caller may see, oldest first, following pages up to `limit`."""
        found: list[Reservation] = []
        token = ""
        while len(found) < limit:
            call = reservation_pb.ListReservationsRequest(
                project=project, page_size=min(500, limit - len(found)), page_token=token
            )
            page = self._call(self._reservations.ListReservations, call)
            found.extend(reservation_from_proto(r) for r in page.reservations)
            token = page.next_page_token
            if not token:
                break
        return found

    def cancel_reservation(self, reservation_id: str, reason: str = "") -> Reservation:
        call = reservation_pb.CancelReservationRequest(reservation_id=reservation_id, reason=reason)
        return reservation_from_proto(self._call(self._reservations.CancelReservation, call).reservation)
