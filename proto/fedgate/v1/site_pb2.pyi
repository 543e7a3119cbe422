import datetime

from fedgate.v1 import job_pb2 as _job_pb2
from fedgate.v1 import usage_pb2 as _usage_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SiteLiveness(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SITE_LIVENESS_UNSPECIFIED: _ClassVar[SiteLiveness]
    SITE_LIVENESS_LIVE: _ClassVar[SiteLiveness]
    SITE_LIVENESS_SUSPECT: _ClassVar[SiteLiveness]
    SITE_LIVENESS_LOST: _ClassVar[SiteLiveness]
SITE_LIVENESS_UNSPECIFIED: SiteLiveness
SITE_LIVENESS_LIVE: SiteLiveness
SITE_LIVENESS_SUSPECT: SiteLiveness
SITE_LIVENESS_LOST: SiteLiveness

class Pool(_message.Message):
    __slots__ = ("accelerator_class", "total", "offered", "free", "cards_per_node", "interconnect", "labels", "free_nodes", "largest_partial_free")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ACCELERATOR_CLASS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    OFFERED_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    CARDS_PER_NODE_FIELD_NUMBER: _ClassVar[int]
    INTERCONNECT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    FREE_NODES_FIELD_NUMBER: _ClassVar[int]
    LARGEST_PARTIAL_FREE_FIELD_NUMBER: _ClassVar[int]
    accelerator_class: str
    total: int
    offered: int
    free: int
    cards_per_node: int
    interconnect: str
    labels: _containers.ScalarMap[str, str]
    free_nodes: int
    largest_partial_free: int
    def __init__(self, accelerator_class: _Optional[str] = ..., total: _Optional[int] = ..., offered: _Optional[int] = ..., free: _Optional[int] = ..., cards_per_node: _Optional[int] = ..., interconnect: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., free_nodes: _Optional[int] = ..., largest_partial_free: _Optional[int] = ...) -> None: ...

class Site(_message.Message):
    __slots__ = ("name", "connected", "draining", "pools", "agent_version", "last_seen_time", "liveness", "liveness_reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    LIVENESS_FIELD_NUMBER: _ClassVar[int]
    LIVENESS_REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    connected: bool
    draining: bool
    pools: _containers.RepeatedCompositeFieldContainer[Pool]
    agent_version: str
    last_seen_time: _timestamp_pb2.Timestamp
    liveness: SiteLiveness
    liveness_reason: str
    def __init__(self, name: _Optional[str] = ..., connected: _Optional[bool] = ..., draining: _Optional[bool] = ..., pools: _Optional[_Iterable[_Union[Pool, _Mapping]]] = ..., agent_version: _Optional[str] = ..., last_seen_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., liveness: _Optional[_Union[SiteLiveness, str]] = ..., liveness_reason: _Optional[str] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("site", "agent_version", "resume_cursor", "backend", "running", "rendezvous")
    SITE_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESUME_CURSOR_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    RENDEZVOUS_FIELD_NUMBER: _ClassVar[int]
    site: str
    agent_version: str
    resume_cursor: int
    backend: str
    running: _containers.RepeatedCompositeFieldContainer[RunningJob]
    rendezvous: RendezvousPoint
    def __init__(self, site: _Optional[str] = ..., agent_version: _Optional[str] = ..., resume_cursor: _Optional[int] = ..., backend: _Optional[str] = ..., running: _Optional[_Iterable[_Union[RunningJob, _Mapping]]] = ..., rendezvous: _Optional[_Union[RendezvousPoint, _Mapping]] = ...) -> None: ...

class RunningJob(_message.Message):
    __slots__ = ("job_id", "epoch", "state")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    epoch: int
    state: _job_pb2.JobState
    def __init__(self, job_id: _Optional[str] = ..., epoch: _Optional[int] = ..., state: _Optional[_Union[_job_pb2.JobState, str]] = ...) -> None: ...

class CapacityReport(_message.Message):
    __slots__ = ("full", "pools", "terms")
    FULL_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    full: bool
    pools: _containers.RepeatedCompositeFieldContainer[Pool]
    terms: SiteTerms
    def __init__(self, full: _Optional[bool] = ..., pools: _Optional[_Iterable[_Union[Pool, _Mapping]]] = ..., terms: _Optional[_Union[SiteTerms, _Mapping]] = ...) -> None: ...

class SiteTerms(_message.Message):
    __slots__ = ("tenants", "projects", "max_job_cards", "image_registries")
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    MAX_JOB_CARDS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_REGISTRIES_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.RepeatedScalarFieldContainer[str]
    projects: _containers.RepeatedScalarFieldContainer[str]
    max_job_cards: int
    image_registries: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenants: _Optional[_Iterable[str]] = ..., projects: _Optional[_Iterable[str]] = ..., max_job_cards: _Optional[int] = ..., image_registries: _Optional[_Iterable[str]] = ...) -> None: ...

class JobUpdate(_message.Message):
    __slots__ = ("job_id", "epoch", "state", "exit_code", "message", "time", "device_indices", "sequence", "lease_returned", "receipt")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_INDICES_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LEASE_RETURNED_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    epoch: int
    state: _job_pb2.JobState
    exit_code: int
    message: str
    time: _timestamp_pb2.Timestamp
    device_indices: _containers.RepeatedScalarFieldContainer[int]
    sequence: int
    lease_returned: bool
    receipt: _usage_pb2.UsageReceipt
    def __init__(self, job_id: _Optional[str] = ..., epoch: _Optional[int] = ..., state: _Optional[_Union[_job_pb2.JobState, str]] = ..., exit_code: _Optional[int] = ..., message: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., device_indices: _Optional[_Iterable[int]] = ..., sequence: _Optional[int] = ..., lease_returned: _Optional[bool] = ..., receipt: _Optional[_Union[_usage_pb2.UsageReceipt, _Mapping]] = ...) -> None: ...

class ReserveReply(_message.Message):
    __slots__ = ("reservation_id", "accepted", "reason", "free")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    accepted: bool
    reason: str
    free: int
    def __init__(self, reservation_id: _Optional[str] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., free: _Optional[int] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("stream_id", "data", "end", "error")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    stream_id: int
    data: bytes
    end: bool
    error: str
    def __init__(self, stream_id: _Optional[int] = ..., data: _Optional[bytes] = ..., end: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("sequence",)
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class ConnectRequest(_message.Message):
    __slots__ = ("hello", "capacity", "job_update", "reserve_reply", "ack", "log_chunk")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    JOB_UPDATE_FIELD_NUMBER: _ClassVar[int]
    RESERVE_REPLY_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    LOG_CHUNK_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    capacity: CapacityReport
    job_update: JobUpdate
    reserve_reply: ReserveReply
    ack: Ack
    log_chunk: LogChunk
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., capacity: _Optional[_Union[CapacityReport, _Mapping]] = ..., job_update: _Optional[_Union[JobUpdate, _Mapping]] = ..., reserve_reply: _Optional[_Union[ReserveReply, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., log_chunk: _Optional[_Union[LogChunk, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("last_update_sequence", "report_interval", "site_lease")
    LAST_UPDATE_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    REPORT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    SITE_LEASE_FIELD_NUMBER: _ClassVar[int]
    last_update_sequence: int
    report_interval: _duration_pb2.Duration
    site_lease: _duration_pb2.Duration
    def __init__(self, last_update_sequence: _Optional[int] = ..., report_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., site_lease: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Launch(_message.Message):
    __slots__ = ("job_id", "epoch", "attempt", "tenant", "project", "accelerator_class", "cards", "run", "max_runtime", "env", "labels", "nodes", "rendezvous")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ACCELERATOR_CLASS_FIELD_NUMBER: _ClassVar[int]
    CARDS_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNTIME_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    RENDEZVOUS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    epoch: int
    attempt: int
    tenant: str
    project: str
    accelerator_class: str
    cards: int
    run: _job_pb2.StackRun
    max_runtime: _duration_pb2.Duration
    env: _containers.ScalarMap[str, str]
    labels: _containers.ScalarMap[str, str]
    nodes: int
    rendezvous: Rendezvous
    def __init__(self, job_id: _Optional[str] = ..., epoch: _Optional[int] = ..., attempt: _Optional[int] = ..., tenant: _Optional[str] = ..., project: _Optional[str] = ..., accelerator_class: _Optional[str] = ..., cards: _Optional[int] = ..., run: _Optional[_Union[_job_pb2.StackRun, _Mapping]] = ..., max_runtime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., env: _Optional[_Mapping[str, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., nodes: _Optional[int] = ..., rendezvous: _Optional[_Union[Rendezvous, _Mapping]] = ...) -> None: ...

class Rendezvous(_message.Message):
    __slots__ = ("nnodes", "first_rank", "world_size", "master_addr", "master_port")
    NNODES_FIELD_NUMBER: _ClassVar[int]
    FIRST_RANK_FIELD_NUMBER: _ClassVar[int]
    WORLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    MASTER_ADDR_FIELD_NUMBER: _ClassVar[int]
    MASTER_PORT_FIELD_NUMBER: _ClassVar[int]
    nnodes: int
    first_rank: int
    world_size: int
    master_addr: str
    master_port: int
    def __init__(self, nnodes: _Optional[int] = ..., first_rank: _Optional[int] = ..., world_size: _Optional[int] = ..., master_addr: _Optional[str] = ..., master_port: _Optional[int] = ...) -> None: ...

class RendezvousPoint(_message.Message):
    __slots__ = ("host", "first_port", "last_port")
    HOST_FIELD_NUMBER: _ClassVar[int]
    FIRST_PORT_FIELD_NUMBER: _ClassVar[int]
    LAST_PORT_FIELD_NUMBER: _ClassVar[int]
    host: str
    first_port: int
    last_port: int
    def __init__(self, host: _Optional[str] = ..., first_port: _Optional[int] = ..., last_port: _Optional[int] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ("job_id", "epoch", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    epoch: int
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., epoch: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class Preempt(_message.Message):
    __slots__ = ("job_id", "epoch", "grace_period")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    epoch: int
    grace_period: _duration_pb2.Duration
    def __init__(self, job_id: _Optional[str] = ..., epoch: _Optional[int] = ..., grace_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Reserve(_message.Message):
    __slots__ = ("reservation_id", "job_id", "accelerator_class", "cards", "timeout", "tenant", "project", "run", "epoch", "start_time", "end_time", "nodes")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ACCELERATOR_CLASS_FIELD_NUMBER: _ClassVar[int]
    CARDS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    job_id: str
    accelerator_class: str
    cards: int
    timeout: _duration_pb2.Duration
    tenant: str
    project: str
    run: _job_pb2.StackRun
    epoch: int
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    nodes: int
    def __init__(self, reservation_id: _Optional[str] = ..., job_id: _Optional[str] = ..., accelerator_class: _Optional[str] = ..., cards: _Optional[int] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., tenant: _Optional[str] = ..., project: _Optional[str] = ..., run: _Optional[_Union[_job_pb2.StackRun, _Mapping]] = ..., epoch: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., nodes: _Optional[int] = ...) -> None: ...

class Commit(_message.Message):
    __slots__ = ("reservation_id",)
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    def __init__(self, reservation_id: _Optional[str] = ...) -> None: ...

class Abort(_message.Message):
    __slots__ = ("reservation_id", "reason")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    reason: str
    def __init__(self, reservation_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Drain(_message.Message):
    __slots__ = ("draining",)
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    draining: bool
    def __init__(self, draining: _Optional[bool] = ...) -> None: ...

class Closing(_message.Message):
    __slots__ = ("reason", "message")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: str
    message: str
    def __init__(self, reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class LogRequest(_message.Message):
    __slots__ = ("stream_id", "job_id", "epoch", "follow", "tail_bytes", "window_bytes")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_BYTES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_BYTES_FIELD_NUMBER: _ClassVar[int]
    stream_id: int
    job_id: str
    epoch: int
    follow: bool
    tail_bytes: int
    window_bytes: int
    def __init__(self, stream_id: _Optional[int] = ..., job_id: _Optional[str] = ..., epoch: _Optional[int] = ..., follow: _Optional[bool] = ..., tail_bytes: _Optional[int] = ..., window_bytes: _Optional[int] = ...) -> None: ...

class LogCredit(_message.Message):
    __slots__ = ("stream_id", "bytes")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    stream_id: int
    bytes: int
    def __init__(self, stream_id: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class LogCancel(_message.Message):
    __slots__ = ("stream_id",)
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    stream_id: int
    def __init__(self, stream_id: _Optional[int] = ...) -> None: ...

class Rejection(_message.Message):
    __slots__ = ("update_sequence", "reason", "message", "last_update_sequence")
    UPDATE_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATE_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    update_sequence: int
    reason: str
    message: str
    last_update_sequence: int
    def __init__(self, update_sequence: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., last_update_sequence: _Optional[int] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ("sequence", "welcome", "launch", "cancel", "preempt", "reserve", "commit", "abort", "drain", "ack", "rejection", "log_request", "log_cancel", "closing", "log_credit")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    PREEMPT_FIELD_NUMBER: _ClassVar[int]
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    REJECTION_FIELD_NUMBER: _ClassVar[int]
    LOG_REQUEST_FIELD_NUMBER: _ClassVar[int]
    LOG_CANCEL_FIELD_NUMBER: _ClassVar[int]
    CLOSING_FIELD_NUMBER: _ClassVar[int]
    LOG_CREDIT_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    welcome: Welcome
    launch: Launch
    cancel: Cancel
    preempt: Preempt
    reserve: Reserve
    commit: Commit
    abort: Abort
    drain: Drain
    ack: Ack
    rejection: Rejection
    log_request: LogRequest
    log_cancel: LogCancel
    closing: Closing
    log_credit: LogCredit
    def __init__(self, sequence: _Optional[int] = ..., welcome: _Optional[_Union[Welcome, _Mapping]] = ..., launch: _Optional[_Union[Launch, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., preempt: _Optional[_Union[Preempt, _Mapping]] = ..., reserve: _Optional[_Union[Reserve, _Mapping]] = ..., commit: _Optional[_Union[Commit, _Mapping]] = ..., abort: _Optional[_Union[Abort, _Mapping]] = ..., drain: _Optional[_Union[Drain, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., rejection: _Optional[_Union[Rejection, _Mapping]] = ..., log_request: _Optional[_Union[LogRequest, _Mapping]] = ..., log_cancel: _Optional[_Union[LogCancel, _Mapping]] = ..., closing: _Optional[_Union[Closing, _Mapping]] = ..., log_credit: _Optional[_Union[LogCredit, _Mapping]] = ...) -> None: ...
