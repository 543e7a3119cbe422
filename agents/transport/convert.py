"""Conversions between fedgate.v1 protobuf messages and the agent's dataclasses.

Owns: the field-by-field mapping of what the agent sends (job updates, capacity, Hello, replies, log chunks)
and of what it receives (Welcome, commands). Each is one direction only: its other half is the gateway's
(`gateway.transport`), and the tests drive the agent with the gateway's own encoders. Job states, times,
durations, pools and terms are the shared conversions of `fedgate.common.wire`. It does not validate business
rules (the runtime does) nor touch the stream.
"""

from __future__ import annotations

from collections.abc import Iterable

from agents.core.commands import (
    Abort,
    Cancel,
    Commit,
    Drain,
    GatewayCommand,
    Launch,
    LogCancel,
    LogCommand,
    LogCredit,
    LogRequest,
    Preempt,
    Reserve,
    UpdateRejected,
    UpdatesAcknowledged,
    Welcome,
)
from agents.core.logs import LogChunk
from agents.core.model import JobState, JobUpdate, PoolCapacity, ReserveReply, RunningJob
from fedgate.common import wire
from fedgate.common.rendezvous import Rendezvous, RendezvousPoint
from fedgate.common.terms import SiteTerms
from fedgate.v1 import site_pb2, usage_pb2


def job_update_to_proto(update: JobUpdate) -> site_pb2.JobUpdate:
    return site_pb2.JobUpdate(
        job_id=update.job_id,
        epoch=update.epoch,
        state=wire.state_to_proto(update.state.value),
        # Set (so sent even when 0) on an attempt's end only: a RUNNING update, or a lease handed back, has none.
        exit_code=None if update.state == JobState.RUNNING or update.lease_returned else update.exit_code,
        message=update.message,
        time=wire.time_to_proto(update.time),
        device_indices=list(update.device_indices),
        lease_returned=update.lease_returned,
        sequence=update.sequence,
        receipt=(
            usage_pb2.UsageReceipt(record=update.receipt_record, signature=update.receipt_signature)
            if update.receipt_record
            else None
        ),
    )


def capacity_to_proto(pools: Iterable[PoolCapacity], terms: SiteTerms) -> site_pb2.CapacityReport:
    """A full report: the gateway replaces everything it knew about this site's pools and terms. The terms
    are always set (an empty SiteTerms accepts everything), so that terms removed from the config are
    removed at the gateway too."""
    return site_pb2.CapacityReport(
        full=True, pools=[wire.pool_to_proto(p) for p in pools], terms=wire.terms_to_proto(terms)
    )


def hello_to_proto(
    *,
    site: str,
    agent_version: str,
    resume_cursor: int,
    backend: str,
    running: Iterable[RunningJob],
    rendezvous: RendezvousPoint | None = None,
) -> site_pb2.Hello:
    point = None
    if rendezvous is not None:
        point = site_pb2.RendezvousPoint(
            host=rendezvous.host, first_port=rendezvous.first_port, last_port=rendezvous.last_port
        )
    return site_pb2.Hello(
        rendezvous=point,
        site=site,
        agent_version=agent_version,
        resume_cursor=resume_cursor,
        backend=backend,
        running=[
            site_pb2.RunningJob(job_id=r.job_id, epoch=r.epoch, state=wire.state_to_proto(r.state.value))
            for r in running
        ],
    )


def reserve_reply_to_proto(reply: ReserveReply) -> site_pb2.ReserveReply:
    return site_pb2.ReserveReply(
        reservation_id=reply.reservation_id, accepted=reply.accepted, reason=reply.reason, free=reply.free
    )


def welcome_from_proto(message: site_pb2.Welcome) -> Welcome:
    return Welcome(
        last_update_sequence=message.last_update_sequence,
        report_interval_s=wire.seconds_from_proto(message.report_interval),
        site_lease_s=wire.seconds_from_proto(message.site_lease) if message.HasField("site_lease") else 0.0,
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
        max_runtime_s=wire.seconds_from_proto(message.max_runtime),
        env=dict(message.env),
        labels=dict(message.labels),
        nodes=message.nodes,
        rendezvous=_rendezvous_from_proto(message.rendezvous) if message.HasField("rendezvous") else None,
    )


def _rendezvous_from_proto(message: site_pb2.Rendezvous) -> Rendezvous:
    return Rendezvous(
        nnodes=message.nnodes,
        first_rank=message.first_rank,
        world_size=message.world_size,
        master_addr=message.master_addr,
        master_port=message.master_port,
    )


def command_from_proto(message: site_pb2.ConnectResponse) -> GatewayCommand | None:
    """The command inside a gateway message; None for Welcome or a kind this agent does not know."""
    kind = message.WhichOneof("kind")
    if kind == "launch":
        return launch_from_proto(message.launch)
    if kind == "cancel":
        return Cancel(job_id=message.cancel.job_id, epoch=message.cancel.epoch, reason=message.cancel.reason)
    if kind == "preempt":
        grace = wire.seconds_from_proto(message.preempt.grace_period)
        return Preempt(job_id=message.preempt.job_id, epoch=message.preempt.epoch, grace_s=grace)
    if kind == "reserve":
        r = message.reserve
        timeout = wire.seconds_from_proto(r.timeout)
        window = r.HasField("start_time") and r.HasField("end_time")
        return Reserve(
            r.reservation_id,
            r.job_id,
            r.accelerator_class,
            r.cards,
            timeout_s=timeout,
            tenant=r.tenant,
            project=r.project,
            start=wire.time_from_proto(r.start_time) if window else None,
            end=wire.time_from_proto(r.end_time) if window else None,
            image=r.run.image,
            stack=r.run.stack,
            command=tuple(r.run.command),
            epoch=r.epoch,
            nodes=r.nodes,
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
        return UpdateRejected(
            refused.update_sequence,
            reason=refused.reason,
            message=refused.message,
            last_update_sequence=refused.last_update_sequence,
        )
    return None


def log_command_from_proto(message: site_pb2.ConnectResponse) -> LogCommand | None:
    """The log relay's request inside a gateway message; None for every other kind."""
    kind = message.WhichOneof("kind")
    if kind == "log_request":
        r = message.log_request
        return LogRequest(
            r.stream_id, r.job_id, r.epoch, follow=r.follow, tail_bytes=r.tail_bytes, window_bytes=r.window_bytes
        )
    if kind == "log_cancel":
        return LogCancel(stream_id=message.log_cancel.stream_id)
    if kind == "log_credit":
        return LogCredit(stream_id=message.log_credit.stream_id, bytes=message.log_credit.bytes)
    return None


def log_chunk_to_proto(chunk: LogChunk) -> site_pb2.LogChunk:
    return site_pb2.LogChunk(stream_id=chunk.stream_id, data=chunk.data, end=chunk.end, error=chunk.error)
