import datetime

from fedgate.v1 import job_pb2 as _job_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UsageRecord(_message.Message):
    __slots__ = ("site", "job_id", "epoch", "attempt", "tenant", "project", "accelerator_class", "cards", "start_time", "end_time", "exit_code", "state")
    SITE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ACCELERATOR_CLASS_FIELD_NUMBER: _ClassVar[int]
    CARDS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    site: str
    job_id: str
    epoch: int
    attempt: int
    tenant: str
    project: str
    accelerator_class: str
    cards: int
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    exit_code: int
    state: _job_pb2.JobState
    def __init__(self, site: _Optional[str] = ..., job_id: _Optional[str] = ..., epoch: _Optional[int] = ..., attempt: _Optional[int] = ..., tenant: _Optional[str] = ..., project: _Optional[str] = ..., accelerator_class: _Optional[str] = ..., cards: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., exit_code: _Optional[int] = ..., state: _Optional[_Union[_job_pb2.JobState, str]] = ...) -> None: ...

class UsageReceipt(_message.Message):
    __slots__ = ("record", "signature")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    record: bytes
    signature: bytes
    def __init__(self, record: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class SettledReceipt(_message.Message):
    __slots__ = ("receipt", "site_certificate", "gateway_signature", "gateway_certificate", "settle_time")
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    SITE_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    SETTLE_TIME_FIELD_NUMBER: _ClassVar[int]
    receipt: UsageReceipt
    site_certificate: bytes
    gateway_signature: bytes
    gateway_certificate: bytes
    settle_time: _timestamp_pb2.Timestamp
    def __init__(self, receipt: _Optional[_Union[UsageReceipt, _Mapping]] = ..., site_certificate: _Optional[bytes] = ..., gateway_signature: _Optional[bytes] = ..., gateway_certificate: _Optional[bytes] = ..., settle_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
