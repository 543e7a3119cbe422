import datetime

from fedgate.v1 import site_pb2 as _site_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

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
