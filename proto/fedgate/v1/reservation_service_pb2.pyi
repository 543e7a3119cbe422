import datetime

from fedgate.v1 import job_pb2 as _job_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReservationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESERVATION_STATE_UNSPECIFIED: _ClassVar[ReservationState]
    RESERVATION_STATE_PENDING: _ClassVar[ReservationState]
    RESERVATION_STATE_CONFIRMED: _ClassVar[ReservationState]
    RESERVATION_STATE_ACTIVE: _ClassVar[ReservationState]
    RESERVATION_STATE_ENDED: _ClassVar[ReservationState]
    RESERVATION_STATE_CANCELLED: _ClassVar[ReservationState]
    RESERVATION_STATE_REFUSED: _ClassVar[ReservationState]
RESERVATION_STATE_UNSPECIFIED: ReservationState
RESERVATION_STATE_PENDING: ReservationState
RESERVATION_STATE_CONFIRMED: ReservationState
RESERVATION_STATE_ACTIVE: ReservationState
RESERVATION_STATE_ENDED: ReservationState
RESERVATION_STATE_CANCELLED: ReservationState
RESERVATION_STATE_REFUSED: ReservationState

class ReservationPart(_message.Message):
    __slots__ = ("site", "accelerator_class", "cards", "state", "reason")
    SITE_FIELD_NUMBER: _ClassVar[int]
    ACCELERATOR_CLASS_FIELD_NUMBER: _ClassVar[int]
    CARDS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    site: str
    accelerator_class: str
    cards: int
    state: ReservationState
    reason: str
    def __init__(self, site: _Optional[str] = ..., accelerator_class: _Optional[str] = ..., cards: _Optional[int] = ..., state: _Optional[_Union[ReservationState, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class Reservation(_message.Message):
    __slots__ = ("reservation_id", "tenant", "project", "name", "resources", "sites", "max_sites", "start_time", "end_time", "state", "parts", "reasons", "create_time")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    MAX_SITES_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    tenant: str
    project: str
    name: str
    resources: _job_pb2.Resources
    sites: _containers.RepeatedScalarFieldContainer[str]
    max_sites: int
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    state: ReservationState
    parts: _containers.RepeatedCompositeFieldContainer[ReservationPart]
    reasons: _containers.RepeatedCompositeFieldContainer[_job_pb2.Reason]
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, reservation_id: _Optional[str] = ..., tenant: _Optional[str] = ..., project: _Optional[str] = ..., name: _Optional[str] = ..., resources: _Optional[_Union[_job_pb2.Resources, _Mapping]] = ..., sites: _Optional[_Iterable[str]] = ..., max_sites: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[ReservationState, str]] = ..., parts: _Optional[_Iterable[_Union[ReservationPart, _Mapping]]] = ..., reasons: _Optional[_Iterable[_Union[_job_pb2.Reason, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateReservationRequest(_message.Message):
    __slots__ = ("request_id", "reservation")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reservation: Reservation
    def __init__(self, request_id: _Optional[str] = ..., reservation: _Optional[_Union[Reservation, _Mapping]] = ...) -> None: ...

class CreateReservationResponse(_message.Message):
    __slots__ = ("reservation",)
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    reservation: Reservation
    def __init__(self, reservation: _Optional[_Union[Reservation, _Mapping]] = ...) -> None: ...

class GetReservationRequest(_message.Message):
    __slots__ = ("reservation_id",)
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    def __init__(self, reservation_id: _Optional[str] = ...) -> None: ...

class GetReservationResponse(_message.Message):
    __slots__ = ("reservation",)
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    reservation: Reservation
    def __init__(self, reservation: _Optional[_Union[Reservation, _Mapping]] = ...) -> None: ...

class ListReservationsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "project")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    project: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., project: _Optional[str] = ...) -> None: ...

class ListReservationsResponse(_message.Message):
    __slots__ = ("reservations", "next_page_token")
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    reservations: _containers.RepeatedCompositeFieldContainer[Reservation]
    next_page_token: str
    def __init__(self, reservations: _Optional[_Iterable[_Union[Reservation, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelReservationRequest(_message.Message):
    __slots__ = ("reservation_id", "reason")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    reason: str
    def __init__(self, reservation_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelReservationResponse(_message.Message):
    __slots__ = ("reservation",)
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    reservation: Reservation
    def __init__(self, reservation: _Optional[_Union[Reservation, _Mapping]] = ...) -> None: ...
