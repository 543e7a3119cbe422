import datetime

from fedgate.v1 import reason_pb2 as _reason_pb2
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

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RESERVING: _ClassVar[JobState]
    JOB_STATE_DISPATCHED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
    JOB_STATE_REJECTED: _ClassVar[JobState]
    JOB_STATE_PREEMPTED: _ClassVar[JobState]
    JOB_STATE_LOST: _ClassVar[JobState]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RESERVING: JobState
JOB_STATE_DISPATCHED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
JOB_STATE_REJECTED: JobState
JOB_STATE_PREEMPTED: JobState
JOB_STATE_LOST: JobState

class Capability(_message.Message):
    __slots__ = ("min_memory_gib", "min_bf16_tflops", "stacks")
    MIN_MEMORY_GIB_FIELD_NUMBER: _ClassVar[int]
    MIN_BF16_TFLOPS_FIELD_NUMBER: _ClassVar[int]
    STACKS_FIELD_NUMBER: _ClassVar[int]
    min_memory_gib: float
    min_bf16_tflops: float
    stacks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, min_memory_gib: _Optional[float] = ..., min_bf16_tflops: _Optional[float] = ..., stacks: _Optional[_Iterable[str]] = ...) -> None: ...

class Resources(_message.Message):
    __slots__ = ("accelerator_class", "capability", "cards", "nodes")
    ACCELERATOR_CLASS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    CARDS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    accelerator_class: str
    capability: Capability
    cards: int
    nodes: int
    def __init__(self, accelerator_class: _Optional[str] = ..., capability: _Optional[_Union[Capability, _Mapping]] = ..., cards: _Optional[int] = ..., nodes: _Optional[int] = ...) -> None: ...

class StackRun(_message.Message):
    __slots__ = ("stack", "image", "command")
    STACK_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    stack: str
    image: str
    command: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, stack: _Optional[str] = ..., image: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ...) -> None: ...

class Topology(_message.Message):
    __slots__ = ("max_sites", "min_cards_per_site")
    MAX_SITES_FIELD_NUMBER: _ClassVar[int]
    MIN_CARDS_PER_SITE_FIELD_NUMBER: _ClassVar[int]
    max_sites: int
    min_cards_per_site: int
    def __init__(self, max_sites: _Optional[int] = ..., min_cards_per_site: _Optional[int] = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ("tenant", "project", "name", "resources", "runs", "max_runtime", "labels", "env", "priority_class", "topology", "data", "reservation", "dataset")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNTIME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_CLASS_FIELD_NUMBER: _ClassVar[int]
    TOPOLOGY_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    project: str
    name: str
    resources: Resources
    runs: _containers.RepeatedCompositeFieldContainer[StackRun]
    max_runtime: _duration_pb2.Duration
    labels: _containers.ScalarMap[str, str]
    env: _containers.ScalarMap[str, str]
    priority_class: str
    topology: Topology
    data: DataLocation
    reservation: str
    dataset: str
    def __init__(self, tenant: _Optional[str] = ..., project: _Optional[str] = ..., name: _Optional[str] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., runs: _Optional[_Iterable[_Union[StackRun, _Mapping]]] = ..., max_runtime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., env: _Optional[_Mapping[str, str]] = ..., priority_class: _Optional[str] = ..., topology: _Optional[_Union[Topology, _Mapping]] = ..., data: _Optional[_Union[DataLocation, _Mapping]] = ..., reservation: _Optional[str] = ..., dataset: _Optional[str] = ...) -> None: ...

class DataLocation(_message.Message):
    __slots__ = ("classification", "region")
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    classification: str
    region: str
    def __init__(self, classification: _Optional[str] = ..., region: _Optional[str] = ...) -> None: ...

class Reason(_message.Message):
    __slots__ = ("stage", "code", "message", "site")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    stage: _reason_pb2.ReasonStage
    code: _reason_pb2.ReasonCode
    message: str
    site: str
    def __init__(self, stage: _Optional[_Union[_reason_pb2.ReasonStage, str]] = ..., code: _Optional[_Union[_reason_pb2.ReasonCode, str]] = ..., message: _Optional[str] = ..., site: _Optional[str] = ...) -> None: ...

class Placement(_message.Message):
    __slots__ = ("site", "accelerator_class", "cards", "device_indices", "nodes")
    SITE_FIELD_NUMBER: _ClassVar[int]
    ACCELERATOR_CLASS_FIELD_NUMBER: _ClassVar[int]
    CARDS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_INDICES_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    site: str
    accelerator_class: str
    cards: int
    device_indices: _containers.RepeatedScalarFieldContainer[int]
    nodes: int
    def __init__(self, site: _Optional[str] = ..., accelerator_class: _Optional[str] = ..., cards: _Optional[int] = ..., device_indices: _Optional[_Iterable[int]] = ..., nodes: _Optional[int] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "spec", "state", "attempt", "epoch", "placements", "reasons", "exit_code", "request_id", "create_time", "update_time", "start_time", "end_time")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    PLACEMENTS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    spec: JobSpec
    state: JobState
    attempt: int
    epoch: int
    placements: _containers.RepeatedCompositeFieldContainer[Placement]
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    exit_code: int
    request_id: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, job_id: _Optional[str] = ..., spec: _Optional[_Union[JobSpec, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ..., attempt: _Optional[int] = ..., epoch: _Optional[int] = ..., placements: _Optional[_Iterable[_Union[Placement, _Mapping]]] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ..., exit_code: _Optional[int] = ..., request_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "state", "attempt", "site", "message", "time", "sequence")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: JobState
    attempt: int
    site: str
    message: str
    time: _timestamp_pb2.Timestamp
    sequence: int
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., attempt: _Optional[int] = ..., site: _Optional[str] = ..., message: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sequence: _Optional[int] = ...) -> None: ...
