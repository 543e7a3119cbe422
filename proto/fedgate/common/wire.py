"""The conversions both sides of the site stream make, defined once: job states, times, durations, pools, terms.

Owns: the mapping of each shared noun to and from `fedgate.v1` in pairs (`x_to_proto` / `x_from_proto`), so
that what the agent encodes is exactly what the gateway decodes. Job states travel by name (`RUNNING`), and
each side turns the name into its own enum. Also the reading of a refusal's ErrorInfo, and of the leader a
standby gateway names in it, which the agent and the CLI both follow. It validates nothing beyond the wire's
own bounds (an unknown enum number, over-long lists of terms); each side checks its business rules. Only
`gateway.transport` and `agents.transport` import it (an import-linter contract): the rest of fedgate.common
stays free of protobuf.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar, overload

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2

from fedgate.common.terms import SiteTerms
from fedgate.v1 import job_pb2, site_pb2

_STATE_PREFIX = "JOB_STATE_"
MAX_TERMS_TENANTS = 256
MAX_TERMS_PROJECTS = 1024
MAX_TERMS_REGISTRIES = 64

T = TypeVar("T", bound=SiteTerms)


def state_to_proto(name: str) -> job_pb2.JobState:
    """A job state by its name (`RUNNING`, the value of either side's JobState) as `fedgate.v1.JobState`."""
    return job_pb2.JobState.Value(_STATE_PREFIX + name)  # type: ignore[return-value]


def state_from_proto(value: int) -> str | None:
    """The name of a `fedgate.v1.JobState` (`RUNNING`); None for UNSPECIFIED or a number this contract lacks."""
    if value == job_pb2.JOB_STATE_UNSPECIFIED or value not in job_pb2.JobState.values():
        return None
    return job_pb2.JobState.Name(value).removeprefix(_STATE_PREFIX)


@overload
def time_to_proto(moment: datetime) -> Timestamp: ...
@overload
def time_to_proto(moment: None) -> None: ...
def time_to_proto(moment: datetime | None) -> Timestamp | None:
    """An instant as a Timestamp (None stays None, an unset field). A naive datetime is taken as UTC."""
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC))
    return stamp


def time_from_proto(stamp: Timestamp) -> datetime:
    """An aware UTC datetime."""
    return stamp.ToDatetime(tzinfo=UTC)


def duration_to_proto(value: timedelta) -> Duration:
    duration = Duration()
    duration.FromTimedelta(value)
    return duration


def duration_from_proto(duration: Duration) -> timedelta:
    return duration.ToTimedelta()


def seconds_to_proto(seconds: float) -> Duration:
    """A duration in seconds (float, nanosecond precision) as a Duration."""
    duration = Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def seconds_from_proto(duration: Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


class PoolFields(Protocol):
    """A pool as either side holds it (the agent's PoolCapacity, the gateway's Pool)."""

    @property
    def accelerator_class(self) -> str: ...
    @property
    def total(self) -> int: ...
    @property
    def offered(self) -> int: ...
    @property
    def free(self) -> int: ...
    @property
    def cards_per_node(self) -> int: ...
    @property
    def interconnect(self) -> str: ...
    @property
    def labels(self) -> Mapping[str, str] | Iterable[tuple[str, str]]: ...
    @property
    def free_nodes(self) -> int | None: ...
    @property
    def largest_partial_free(self) -> int: ...


def pool_to_proto(pool: PoolFields) -> site_pb2.Pool:
    return site_pb2.Pool(
        accelerator_class=pool.accelerator_class,
        total=pool.total,
        offered=pool.offered,
        free=pool.free,
        cards_per_node=pool.cards_per_node,
        interconnect=pool.interconnect,
        labels=dict(pool.labels),
        free_nodes=pool.free_nodes,  # None leaves it unset: no node shape said
        largest_partial_free=pool.largest_partial_free,
    )


def pool_from_proto(message: site_pb2.Pool) -> dict[str, object]:
    """The pool's fields by name, labels as pairs sorted by key; each side builds its own dataclass from them
    after its own checks (the gateway refuses free > offered > total)."""
    return {
        "accelerator_class": message.accelerator_class,
        "total": message.total,
        "offered": message.offered,
        "free": message.free,
        "cards_per_node": message.cards_per_node,
        "interconnect": message.interconnect,
        "labels": tuple(sorted(message.labels.items())),
        "free_nodes": message.free_nodes if message.HasField("free_nodes") else None,
        "largest_partial_free": message.largest_partial_free,
    }


def terms_to_proto(terms: SiteTerms) -> site_pb2.SiteTerms:
    return site_pb2.SiteTerms(
        tenants=list(terms.tenants),
        projects=list(terms.projects),
        max_job_cards=terms.max_job_cards,
        image_registries=list(terms.image_registries),
    )


def terms_from_proto(message: site_pb2.SiteTerms, terms_type: type[T] = SiteTerms) -> T:  # type: ignore[assignment]
    """The terms as `terms_type` (SiteTerms or a side's extension of it), each list cut to the wire's bounds."""
    return terms_type(
        tenants=tuple(message.tenants)[:MAX_TERMS_TENANTS],
        projects=tuple(message.projects)[:MAX_TERMS_PROJECTS],
        max_job_cards=message.max_job_cards,
        image_registries=tuple(message.image_registries)[:MAX_TERMS_REGISTRIES],
    )


def error_status(trailing_metadata: Iterable[Any] | None) -> status_pb2.Status | None:
    """The google.rpc.Status of a refused call (trailing `grpc-status-details-bin`), or None."""
    for key, value in trailing_metadata or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return None


def error_info(trailing_metadata: Iterable[Any] | None) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo of a refused call's google.rpc.Status (trailing `grpc-status-details-bin`), or None."""
    status = error_status(trailing_metadata)
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    return None


def leader_named(trailing_metadata: Iterable[Any] | None) -> str:
    """The leader's address a standby gateway's refusal names (reason NOT_LEADER, metadata `leader`), or ""."""
    info = error_info(trailing_metadata)
    return info.metadata.get("leader", "") if info is not None and info.reason == "NOT_LEADER" else ""
