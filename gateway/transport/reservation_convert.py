"""Conversions for advance reservations: the ReservationService messages and the booking commands sent to
sites, one pair per noun. Field mapping and size limits only; the rules live in `gateway.reservations.book`.

Owns: the protobuf conversions of reservations and booking commands.
"""

from __future__ import annotations

from fedgate.v1 import job_pb2, site_pb2
from fedgate.v1 import reservation_service_pb2 as pb
from gateway.errors import InvalidArgument
from gateway.jobs.model import Capability, Resources
from gateway.reservations.model import (
    BookCommand,
    ReleaseCommand,
    Reservation,
    ReservationPart,
    ReservationRequest,
    ReservationState,
)
from gateway.transport.convert import reason_from_proto, reason_to_proto, time_from_proto, time_to_proto

MAX_SITES = 64


def state_to_proto(state: ReservationState) -> pb.ReservationState:
    return pb.ReservationState.Value(f"RESERVATION_STATE_{state.value}")  # type: ignore[return-value]


def state_from_proto(value: int) -> ReservationState:
    name = pb.ReservationState.Name(value) if value in pb.ReservationState.values() else ""
    if not name or name == "RESERVATION_STATE_UNSPECIFIED":
        raise InvalidArgument(f"reservation state {value} is not a valid ReservationState")
    return ReservationState(name.removeprefix("RESERVATION_STATE_"))


def resources_to_proto(resources: Resources) -> job_pb2.Resources:
    msg = job_pb2.Resources(accelerator_class=resources.accelerator_class, cards=resources.cards)
    if resources.capability is not None:
        cap = resources.capability
        msg.capability.CopyFrom(
            job_pb2.Capability(
                min_memory_gib=cap.min_memory_gib, min_bf16_tflops=cap.min_bf16_tflops, stacks=list(cap.stacks)
            )
        )
    return msg


def resources_from_proto(msg: job_pb2.Resources) -> Resources:
    capability = None
    if msg.HasField("capability"):
        c = msg.capability
        capability = Capability(c.min_memory_gib, c.min_bf16_tflops, tuple(c.stacks)[:16])
    return Resources(msg.accelerator_class, capability, msg.cards)


def request_from_proto(msg: pb.Reservation) -> ReservationRequest:
    """What a caller asks for; the gateway assigns the rest. A missing time is refused here, by name."""
    for field in ("start_time", "end_time"):
        if not msg.HasField(field):
            raise InvalidArgument(f"a reservation needs {field}", reason="BAD_RESERVATION")
    if len(msg.sites) > MAX_SITES:
        raise InvalidArgument(f"a reservation may name at most {MAX_SITES} sites", reason="BAD_RESERVATION")
    return ReservationRequest(
        tenant=msg.tenant[:64],
        project=msg.project[:64],
        resources=resources_from_proto(msg.resources),
        start=time_from_proto(msg.start_time),
        end=time_from_proto(msg.end_time),
        name=msg.name[:64],
        sites=tuple(s[:64] for s in msg.sites),
        max_sites=msg.max_sites,
    )


def request_to_proto(request: ReservationRequest) -> pb.Reservation:
    return pb.Reservation(
        tenant=request.tenant,
        project=request.project,
        name=request.name,
        resources=resources_to_proto(request.resources),
        sites=list(request.sites),
        max_sites=request.max_sites,
        start_time=time_to_proto(request.start),
        end_time=time_to_proto(request.end),
    )


def reservation_to_proto(reservation: Reservation) -> pb.Reservation:
    msg = request_to_proto(reservation.request)
    msg.reservation_id = reservation.reservation_id
    msg.state = state_to_proto(reservation.state)
    msg.parts.extend(
        pb.ReservationPart(
            site=p.site,
            accelerator_class=p.accelerator_class,
            cards=p.cards,
            state=state_to_proto(p.state),
            reason=p.reason,
        )
        for p in reservation.parts
    )
    msg.reasons.extend(reason_to_proto(r) for r in reservation.reasons)
    msg.create_time.FromDatetime(reservation.create_time)
    return msg


def reservation_from_proto(msg: pb.Reservation) -> Reservation:
    created = time_from_proto(msg.create_time)
    return Reservation(
        reservation_id=msg.reservation_id,
        request=request_from_proto(msg),
        state=state_from_proto(msg.state),
        create_time=created,
        update_time=created,
        parts=tuple(
            ReservationPart(p.site, p.accelerator_class, p.cards, state_from_proto(p.state), p.reason)
            for p in msg.parts
        ),
        reasons=tuple(reason_from_proto(r) for r in msg.reasons),
    )


def booking_command_to_proto(sequence: int, command: BookCommand | ReleaseCommand) -> site_pb2.ConnectResponse:
    """Reserve with a window (an advance booking), or Abort (release it)."""
    if isinstance(command, ReleaseCommand):
        return site_pb2.ConnectResponse(
            sequence=sequence, abort=site_pb2.Abort(reservation_id=command.reservation_id, reason=command.reason)
        )
    return site_pb2.ConnectResponse(
        sequence=sequence,
        reserve=site_pb2.Reserve(
            reservation_id=command.reservation_id,
            tenant=command.tenant,
            project=command.project,
            accelerator_class=command.accelerator_class,
            cards=command.cards,
            start_time=time_to_proto(command.start),
            end_time=time_to_proto(command.end),
        ),
    )
