"""ReservationService: members of a project book cards ahead, read, list and cancel their reservations. Each
method translates, calls one method of the reservation book, and translates back, inside the error translator.

Owns: the ReservationService servicer: translation only.
"""

from __future__ import annotations

from typing import Any

import grpc

from fedgate.v1 import reservation_service_pb2 as pb
from fedgate.v1 import reservation_service_pb2_grpc
from gateway.errors import InvalidArgument
from gateway.reservations.book import ReservationBook
from gateway.reservations.model import Reservation
from gateway.transport.auth import Authenticator, Guarded
from gateway.transport.errors import translate_errors
from gateway.transport.listing import entry_size, list_budget
from gateway.transport.required import require_fields
from gateway.transport.reservation_convert import request_from_proto, reservation_to_proto
from gateway.trust.service import Trust

Context = grpc.aio.ServicerContext[Any, Any]
MAX_REQUEST_ID = 128


def _reservation_size(reservation: Reservation) -> int:
    return entry_size(reservation_to_proto(reservation))


class ReservationServicer(Guarded, reservation_service_pb2_grpc.ReservationServiceServicer):
    def __init__(
        self, book: ReservationBook, auth: Authenticator, trust: Trust, max_message_bytes: int = 4 << 20
    ) -> None:
        self.book = book
        self.list_budget = list_budget(max_message_bytes)
        self.auth = auth
        self.trust = trust

    @translate_errors
    async def CreateReservation(
        self, request: pb.CreateReservationRequest, context: Context
    ) -> pb.CreateReservationResponse:
        caller = self.auth.principal(context)
        require_fields(request)
        if len(request.request_id) > MAX_REQUEST_ID:
            raise InvalidArgument(f"request_id is longer than {MAX_REQUEST_ID} characters")
        reservation = self.book.create(caller, request_from_proto(request.reservation), request.request_id)
        return pb.CreateReservationResponse(reservation=reservation_to_proto(reservation))

    @translate_errors
    async def GetReservation(self, request: pb.GetReservationRequest, context: Context) -> pb.GetReservationResponse:
        caller = self.auth.principal(context)
        require_fields(request)
        reservation = self.book.get(caller, request.reservation_id)
        return pb.GetReservationResponse(reservation=reservation_to_proto(reservation))

    @translate_errors
    async def ListReservations(
        self, request: pb.ListReservationsRequest, context: Context
    ) -> pb.ListReservationsResponse:
        page = self.book.list(
            self.auth.principal(context),
            request.project,
            request.page_size,
            request.page_token,
            size_of=_reservation_size,
            budget=self.list_budget,
        )
        return pb.ListReservationsResponse(
            reservations=[reservation_to_proto(r) for r in page.reservations], next_page_token=page.next_page_token
        )

    @translate_errors
    async def CancelReservation(
        self, request: pb.CancelReservationRequest, context: Context
    ) -> pb.CancelReservationResponse:
        caller = self.auth.principal(context)
        require_fields(request)
        reservation = self.book.cancel(caller, request.reservation_id, request.reason[:1024])
        return pb.CancelReservationResponse(reservation=reservation_to_proto(reservation))
