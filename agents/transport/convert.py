"""Conversions between fedgate.v1 protobuf messages and the agent's dataclasses, in pairs.

Owns: field-by-field mapping, job states, durations (seconds as float) and timestamps (aware UTC
datetimes). It does not validate business rules (the runtime does) nor touch the stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from agents.core.commands import (
    Abort,
    Cancel,
    Commit,
    Drain,
    GatewayCommand,
    Launch,
    LogCancel,
    LogCommand,
    LogRequest,
    Preempt,
    Reserve,
    UpdateRejected,
    UpdatesAcknowledged,
    Welcome,
)
from agents.core.logs import LogChunk
from agents.core.model import JobState, JobUpdate, PoolCapacity, ReserveReply, RunningJob
from agents.errors import ProtocolError
from fedgate.common.terms import SiteTerms
from fedgate.v1 import job_pb2, site_pb2, usage_pb2

_STATE_TO_PROTO: dict[JobState, job_pb2.JobState] = {
    JobState.RUNNING: job_pb2.JOB_STATE_RUNNING,
    JobState.SUCCEEDED: job_pb2.JOB_STATE_SUCCEEDED,
    JobState.FAILED: job_pb2.JOB_STATE_FAILED,
    JobState.CANCELLED: job_pb2.JOB_STATE_CANCELLED,
    JobState.PREEMPTED: job_pb2.JOB_STATE_PREEMPTED,
    JobState.LOST: job_pb2.JOB_STATE_LOST,
}
_STATE_FROM_PROTO = {number: state for state, number in _STATE_TO_PROTO.items()}


def state_to_proto(state: JobState) -> job_pb2.JobState:
    return _STATE_TO_PROTO[state]


def state_from_proto(value: job_pb2.JobState) -> JobState:
    try:
        return _STATE_FROM_PROTO[value]
    except KeyError:
        raise ProtocolError(f"job state {job_pb2.JobState.Name(value)} is not one an agent reports") from None


def seconds_to_duration(seconds: float) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def seconds_from_duration(duration: Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def time_to_proto(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def time_from_proto(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def job_update_to_proto(update: JobUpdate) -> site_pb2.JobUpdate:
    return site_pb2.JobUpdate(
        job_id=update.job_id,
        epoch=update.epoch,
        state=state_to_proto(update.state),
        exit_code=update.exit_code,
        message=update.message,
        time=time_to_proto(update.time),
        device_indices=list(update.device_indices),
        lease_returned=update.lease_returned,
        sequence=update.sequence,
        receipt=(
            usage_pb2.UsageReceipt(record=update.receipt_record, signature=update.receipt_signature)
            if update.receipt_record
            else None
        ),
    )


def job_update_from_proto(message: site_pb2.JobUpdate) -> JobUpdate:
    return JobUpdate(
        job_id=message.job_id,
        epoch=message.epoch,
        state=state_from_proto(message.state),
        sequence=message.sequence,
        time=time_from_proto(message.time),
        exit_code=message.exit_code,
        message=message.message,
        device_indices=tuple(message.device_indices),
        lease_returned=message.lease_returned,
        receipt_record=message.receipt.record,
        receipt_signature=message.receipt.signature,
    )


def pool_to_proto(pool: PoolCapacity) -> site_pb2.Pool:
    return site_pb2.Pool(
        accelerator_class=pool.accelerator_class,
        total=pool.total,
        offered=pool.offered,
        free=pool.free,
        cards_per_node=pool.cards_per_node,
        interconnect=pool.interconnect,
        labels=dict(pool.labels),
    )


def pool_from_proto(message: site_pb2.Pool) -> PoolCapacity:
    return PoolCapacity(
        accelerator_class=message.accelerator_class,
        total=message.total,
        offered=message.offered,
        free=message.free,
        cards_per_node=message.cards_per_node,
        interconnect=message.interconnect,
        labels=dict(message.labels),
    )


def terms_to_proto(terms: SiteTerms) -> site_pb2.SiteTerms:
    return site_pb2.SiteTerms(
        tenants=list(terms.tenants),
        projects=list(terms.projects),
        max_job_cards=terms.max_job_cards,
        image_registries=list(terms.image_registries),
    )


def terms_from_proto(message: site_pb2.SiteTerms) -> SiteTerms:
    return SiteTerms(
        tenants=tuple(message.tenants),
        projects=tuple(message.projects),
        max_job_cards=message.max_job_cards,
        image_registries=tuple(message.image_registries),
    )


def capacity_to_proto(pools: Iterable[PoolCapacity], terms: SiteTerms) -> site_pb2.CapacityReport:
    """A full report: the gateway replaces everything it knew about this site's pools and terms. The terms
    are always set (an empty SiteTerms accepts everything), so that terms removed from the config are
    removed at the gateway too."""
    return site_pb2.CapacityReport(full=True, pools=[pool_to_proto(p) for p in pools], terms=terms_to_proto(terms))


def hello_to_proto(
    *, site: str, agent_version: str, resume_cursor: int, backend: str, running: Iterable[RunningJob]
) -> site_pb2.Hello:
    return site_pb2.Hello(
        site=site,
        agent_version=agent_version,
        resume_cursor=resume_cursor,
        backend=backend,
        running=[site_pb2.RunningJob(job_id=r.job_id, epoch=r.epoch, state=state_to_proto(r.state)) for r in running],
    )


def reserve_reply_to_proto(reply: ReserveReply) -> site_pb2.ReserveReply:
    return site_pb2.ReserveReply(
        reservation_id=reply.reservation_id, accepted=reply.accepted, reason=reply.reason, free=reply.free
    )


def welcome_to_proto(welcome: Welcome) -> site_pb2.Welcome:
    return site_pb2.Welcome(
        last_update_sequence=welcome.last_update_sequence,
        report_interval=seconds_to_duration(welcome.report_interval_s),
    )


def welcome_from_proto(message: site_pb2.Welcome) -> Welcome:
    return Welcome(
        last_update_sequence=message.last_update_sequence,
        report_interval_s=seconds_from_duration(message.report_interval),
    )


def launch_to_proto(launch: Launch) -> site_pb2.Launch:
    return site_pb2.Launch(
        job_id=launch.job_id,
        epoch=launch.epoch,
        attempt=launch.attempt,
        tenant=launch.tenant,
        project=launch.project,
        accelerator_class=launch.accelerator_class,
        cards=launch.cards,
        run=job_pb2.StackRun(stack=launch.stack, image=launch.image, command=list(launch.command)),
        max_runtime=seconds_to_duration(launch.max_runtime_s),
        env=dict(launch.env),
        labels=dict(launch.labels),
    )


def launch_from_proto(message: site_pb2.Launch) -> Launch:
    return Launch(
        job_id=message.job_id,
        epoch=message.epoch,
        attempt=message.attempt,
        accelerator_class=message.accelerator_class,
        cards=message.cards,
        command=tuple(message.run.command),
        stack=message.run.stack,
        image=message.run.image,
        tenant=message.tenant,
        project=message.project,
        max_runtime_s=seconds_from_duration(message.max_runtime),
        env=dict(message.env),
        labels=dict(message.labels),
    )


def command_from_proto(message: site_pb2.ConnectResponse) -> GatewayCommand | None:
    """The command inside a gateway message; None for Welcome or a kind this agent does not know."""
    kind = message.WhichOneof("kind")
    if kind == "launch":
        return launch_from_proto(message.launch)
    if kind == "cancel":
        return Cancel(job_id=message.cancel.job_id, epoch=message.cancel.epoch, reason=message.cancel.reason)
    if kind == "preempt":
        grace = seconds_from_duration(message.preempt.grace_period)
        return Preempt(job_id=message.preempt.job_id, epoch=message.preempt.epoch, grace_s=grace)
    if kind == "reserve":
        r = message.reserve
        timeout = seconds_from_duration(r.timeout)
        window = r.HasField("start_time") and r.HasField("end_time")
        return Reserve(
            r.reservation_id,
            r.job_id,
            r.accelerator_class,
            r.cards,
            timeout_s=timeout,
            tenant=r.tenant,
            project=r.project,
            start=time_from_proto(r.start_time) if window else None,
            end=time_from_proto(r.end_time) if window else None,
            image=r.run.image,
            stack=r.run.stack,
            command=tuple(r.run.command),
            epoch=r.epoch,
        )
    if kind == "commit":
        return Commit(reservation_id=message.commit.reservation_id)
    if kind == "abort":
        return Abort(reservation_id=message.abort.reservation_id, reason=message.abort.reason)
    if kind == "drain":
        return Drain(draining=message.drain.draining)
    if kind == "ack":
        return UpdatesAcknowledged(sequence=message.ack.sequence)
    if kind == "rejection":
        refused = message.rejection
        return UpdateRejected(refused.update_sequence, reason=refused.reason, message=refused.message)
    return None


def log_command_from_proto(message: site_pb2.ConnectResponse) -> LogCommand | None:
    """The log relay's request inside a gateway message; None for every other kind."""
    kind = message.WhichOneof("kind")
    if kind == "log_request":
        r = message.log_request
        return LogRequest(r.stream_id, r.job_id, r.epoch, follow=r.follow, tail_bytes=r.tail_bytes)
    if kind == "log_cancel":
        return LogCancel(stream_id=message.log_cancel.stream_id)
    return None


def log_chunk_to_proto(chunk: LogChunk) -> site_pb2.LogChunk:
    return site_pb2.LogChunk(stream_id=chunk.stream_id, data=chunk.data, end=chunk.end, error=chunk.error)
