import datetime

from fedgate.v1 import site_pb2 as _site_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TokenRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOKEN_ROLE_UNSPECIFIED: _ClassVar[TokenRole]
    TOKEN_ROLE_MEMBER: _ClassVar[TokenRole]
    TOKEN_ROLE_VIEWER: _ClassVar[TokenRole]

class RevocationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVOCATION_KIND_UNSPECIFIED: _ClassVar[RevocationKind]
    REVOCATION_KIND_SERIAL: _ClassVar[RevocationKind]
    REVOCATION_KIND_PRINCIPAL: _ClassVar[RevocationKind]
    REVOCATION_KIND_TOKEN: _ClassVar[RevocationKind]
TOKEN_ROLE_UNSPECIFIED: TokenRole
TOKEN_ROLE_MEMBER: TokenRole
TOKEN_ROLE_VIEWER: TokenRole
REVOCATION_KIND_UNSPECIFIED: RevocationKind
REVOCATION_KIND_SERIAL: RevocationKind
REVOCATION_KIND_PRINCIPAL: RevocationKind
REVOCATION_KIND_TOKEN: RevocationKind

class GetPolicyStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetPolicyStatusResponse(_message.Message):
    __slots__ = ("version", "path", "load_time", "last_error", "tenants", "projects")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    LOAD_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    version: str
    path: str
    load_time: _timestamp_pb2.Timestamp
    last_error: str
    tenants: int
    projects: int
    def __init__(self, version: _Optional[str] = ..., path: _Optional[str] = ..., load_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_error: _Optional[str] = ..., tenants: _Optional[int] = ..., projects: _Optional[int] = ...) -> None: ...

class ReloadPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadPolicyResponse(_message.Message):
    __slots__ = ("version", "changed")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    version: str
    changed: bool
    def __init__(self, version: _Optional[str] = ..., changed: _Optional[bool] = ...) -> None: ...

class DrainSiteRequest(_message.Message):
    __slots__ = ("site", "draining")
    SITE_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    site: str
    draining: bool
    def __init__(self, site: _Optional[str] = ..., draining: _Optional[bool] = ...) -> None: ...

class DrainSiteResponse(_message.Message):
    __slots__ = ("site",)
    SITE_FIELD_NUMBER: _ClassVar[int]
    site: _site_pb2.Site
    def __init__(self, site: _Optional[_Union[_site_pb2.Site, _Mapping]] = ...) -> None: ...

class CreateJoinTokenRequest(_message.Message):
    __slots__ = ("site", "ttl")
    SITE_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    site: str
    ttl: _duration_pb2.Duration
    def __init__(self, site: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class CreateJoinTokenResponse(_message.Message):
    __slots__ = ("join_token", "expire_time", "ca_fingerprint")
    JOIN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    CA_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    join_token: str
    expire_time: _timestamp_pb2.Timestamp
    ca_fingerprint: str
    def __init__(self, join_token: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ca_fingerprint: _Optional[str] = ...) -> None: ...

class IssueTokenRequest(_message.Message):
    __slots__ = ("tenant", "user", "role", "ttl", "single_use")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    SINGLE_USE_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    user: str
    role: TokenRole
    ttl: _duration_pb2.Duration
    single_use: bool
    def __init__(self, tenant: _Optional[str] = ..., user: _Optional[str] = ..., role: _Optional[_Union[TokenRole, str]] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., single_use: _Optional[bool] = ...) -> None: ...

class IssueTokenResponse(_message.Message):
    __slots__ = ("token", "token_id", "expire_time", "audience")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    token: str
    token_id: str
    expire_time: _timestamp_pb2.Timestamp
    audience: str
    def __init__(self, token: _Optional[str] = ..., token_id: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., audience: _Optional[str] = ...) -> None: ...

class Revocation(_message.Message):
    __slots__ = ("kind", "value", "revoke_time", "reason")
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TIME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    kind: RevocationKind
    value: str
    revoke_time: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, kind: _Optional[_Union[RevocationKind, str]] = ..., value: _Optional[str] = ..., revoke_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeCredentialRequest(_message.Message):
    __slots__ = ("serial", "principal", "token_id", "reason")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    serial: str
    principal: str
    token_id: str
    reason: str
    def __init__(self, serial: _Optional[str] = ..., principal: _Optional[str] = ..., token_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeCredentialResponse(_message.Message):
    __slots__ = ("revocation",)
    REVOCATION_FIELD_NUMBER: _ClassVar[int]
    revocation: Revocation
    def __init__(self, revocation: _Optional[_Union[Revocation, _Mapping]] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("sequence", "time", "kind", "principal", "details", "hash")
    class DetailsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: _timestamp_pb2.Timestamp
    kind: str
    principal: str
    details: _containers.ScalarMap[str, str]
    hash: str
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[str] = ..., principal: _Optional[str] = ..., details: _Optional[_Mapping[str, str]] = ..., hash: _Optional[str] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAuditEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class VerifyAuditRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerifyAuditResponse(_message.Message):
    __slots__ = ("intact", "entries", "first_bad_sequence", "problem")
    INTACT_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    FIRST_BAD_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    intact: bool
    entries: int
    first_bad_sequence: int
    problem: str
    def __init__(self, intact: _Optional[bool] = ..., entries: _Optional[int] = ..., first_bad_sequence: _Optional[int] = ..., problem: _Optional[str] = ...) -> None: ...
