"""Conversions between the contract's messages and the gateway's dataclasses, one pair per noun.

Times, durations, job-state numbers, pools sent and site terms are the shared wire conversions of
`fedgate.common.wire` (what the agent encodes is what the gateway decodes), re-exported here for the servicers.

A domain word of a closed set (a reason's stage, a site's liveness, a token's role, a revocation's kind) travels
as a value of its proto enum by one rule, `enum_to_proto` / `enum_from_proto`: the value is the enum's prefix and
the word in capitals (`policy` <-> REASON_STAGE_POLICY), UNSPECIFIED reads as the set's default. Reason codes are
the exception that proves it: ReasonCode's values are the codes themselves (reason.proto).

Owns: the gateway-side protobuf conversions of jobs, specs, reasons, events, sites and usage, and the enum rule.
"""

from __future__ import annotations

from datetime import timedelta

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from fedgate.common import wire
from fedgate.common.reasons import ReasonCode
from fedgate.common.wire import duration_from_proto, duration_to_proto, pool_to_proto, time_from_proto, time_to_proto
from fedgate.v1 import job_pb2, job_service_pb2, reason_pb2, site_pb2
from gateway.errors import InvalidArgument
from gateway.jobs.model import (
    Capability,
    Job,
    JobEvent,
    JobSpec,
    JobState,
    Placement,
    Reason,
    Resources,
    StackRun,
    Topology,
)
from gateway.placement.place import Candidate
from gateway.sites.model import Pool, SiteView
from gateway.sites.registry import ReserveCommand

# The shared conversions, named here too so that the servicers keep one `convert` to call.
__all__ = ["duration_from_proto", "duration_to_proto", "pool_to_proto", "time_from_proto", "time_to_proto"]


def state_to_proto(state: JobState) -> job_pb2.JobState:
    return wire.state_to_proto(state.value)


def state_from_proto(value: int) -> JobState:
    name = wire.state_from_proto(value)
    if name is None:
        raise InvalidArgument(f"job state {value} is not a valid JobState")
    return JobState(name)


def _pairs(mapping: object) -> tuple[tuple[str, str], ...]:
    """A proto map as sorted pairs. Its limits are the job spec's, checked once for every entry point by
    `gateway.jobs.validate` (the job service calls it), not here."""
    return tuple(sorted(dict(mapping).items()))  # type: ignore[call-overload]


MAX_POOL_LABELS = 64
MAX_POOL_LABEL = 4096  # characters of a pool label's key or value


def _pool_labels(mapping: object) -> tuple[tuple[str, str], ...]:
    """A site's pool labels, bounded (a capacity report is the site's word, kept in memory)."""
    items = _pairs(mapping)
    if len(items) > MAX_POOL_LABELS:
        raise InvalidArgument(f"pool labels has {len(items)} entries; at most {MAX_POOL_LABELS} are allowed")
    for key, value in items:
        if len(key) > MAX_POOL_LABEL or len(value) > MAX_POOL_LABEL:
            raise InvalidArgument(f"pool label {key[:40]!r} is longer than {MAX_POOL_LABEL} characters")
    return items


def spec_from_proto(msg: job_pb2.JobSpec) -> JobSpec:
    """The spec as sent, unchanged (nothing cut short): `gateway.jobs.validate.check_spec` judges it whole."""
    res = msg.resources
    capability = None
    if res.HasField("capability"):
        c = res.capability
        capability = Capability(c.min_memory_gib, c.min_bf16_tflops, tuple(c.stacks))
    max_runtime = msg.max_runtime.ToTimedelta() if msg.HasField("max_runtime") else timedelta(hours=1)
    return JobSpec(
        tenant=msg.tenant,
        project=msg.project,
        name=msg.name,
        resources=Resources(res.accelerator_class, capability, res.cards, res.nodes),
        runs=tuple(StackRun(r.stack, r.image, tuple(r.command)) for r in msg.runs),
        max_runtime=max_runtime,
        labels=_pairs(msg.labels),
        env=_pairs(msg.env),
        priority_class=msg.priority_class,
        topology=Topology(msg.topology.max_sites or 1, msg.topology.min_cards_per_site),
        data_classification=msg.data.classification,
        data_region=msg.data.region,
        reservation=msg.reservation,
        dataset=msg.dataset,
    )


def spec_to_proto(spec: JobSpec) -> job_pb2.JobSpec:
    res = spec.resources
    msg = job_pb2.JobSpec(
        tenant=spec.tenant,
        project=spec.project,
        name=spec.name,
        resources=job_pb2.Resources(accelerator_class=res.accelerator_class, cards=res.cards, nodes=res.nodes),
        runs=[job_pb2.StackRun(stack=r.stack, image=r.image, command=list(r.command)) for r in spec.runs],
        max_runtime=duration_to_proto(spec.max_runtime),
        labels=dict(spec.labels),
        env=dict(spec.env),
        priority_class=spec.priority_class,
        topology=job_pb2.Topology(
            max_sites=spec.topology.max_sites, min_cards_per_site=spec.topology.min_cards_per_site
        ),
        data=job_pb2.DataLocation(classification=spec.data_classification, region=spec.data_region),
        reservation=spec.reservation,
        dataset=spec.dataset,
    )
    if res.capability is not None:
        cap = res.capability
        msg.resources.capability.CopyFrom(
            job_pb2.Capability(
                min_memory_gib=cap.min_memory_gib,
                min_bf16_tflops=cap.min_bf16_tflops,
                stacks=list(cap.stacks),
            )
        )
    return msg


def enum_to_proto(enum: EnumTypeWrapper, word: str) -> int:
    """The value of `enum` for a domain `word` (`policy` -> REASON_STAGE_POLICY); UNSPECIFIED for a word the
    contract does not know (a test holds every word of each closed set to a value)."""
    prefix = enum.DESCRIPTOR.values[0].name.removesuffix("UNSPECIFIED")
    value = enum.DESCRIPTOR.values_by_name.get(prefix + word.upper())
    return int(value.number) if value is not None else 0


def enum_from_proto(enum: EnumTypeWrapper, number: int, default: str) -> str:
    """The domain word of a value of `enum`; `default` for UNSPECIFIED and for a number this side does not know."""
    prefix = enum.DESCRIPTOR.values[0].name.removesuffix("UNSPECIFIED")
    name = enum.DESCRIPTOR.values_by_number.get(number)
    return default if name is None or number == 0 else name.name.removeprefix(prefix).lower()


def code_to_proto(code: str) -> reason_pb2.ReasonCode:
    """A reason code's enum value: the value named as the code (REASON_CODE_UNSPECIFIED for an unknown one)."""
    known = code in ReasonCode.__members__
    return reason_pb2.ReasonCode.Value(code) if known else reason_pb2.ReasonCode.REASON_CODE_UNSPECIFIED  # type: ignore[return-value]


def code_from_proto(number: int) -> str:
    """The code of a ReasonCode value; "" for UNSPECIFIED or a number a newer gateway added."""
    value = reason_pb2.ReasonCode.DESCRIPTOR.values_by_number.get(number)
    return "" if value is None or number == 0 else value.name


def reason_to_proto(reason: Reason) -> job_pb2.Reason:
    return job_pb2.Reason(
        stage=enum_to_proto(reason_pb2.ReasonStage, reason.stage),  # type: ignore[arg-type]
        code=code_to_proto(reason.code),
        message=reason.message,
        site=reason.site,
    )


def reason_from_proto(msg: job_pb2.Reason) -> Reason:
    return Reason(
        enum_from_proto(reason_pb2.ReasonStage, msg.stage, ""), code_from_proto(msg.code), msg.message, msg.site
    )


def exit_code_from_proto(msg: site_pb2.JobUpdate) -> int | None:
    """A site's exit code, None when it gave none; SUCCEEDED without one is 0 (an agent that predates presence
    sends a 0 it cannot mark as set)."""
    if msg.HasField("exit_code"):
        return msg.exit_code
    return 0 if msg.state == job_pb2.JOB_STATE_SUCCEEDED else None


def job_to_proto(job: Job) -> job_pb2.Job:
    return job_pb2.Job(
        job_id=job.job_id,
        spec=spec_to_proto(job.spec),
        state=state_to_proto(job.state),
        attempt=job.attempt,
        epoch=job.epoch,
        placements=[
            job_pb2.Placement(
                site=p.site,
                accelerator_class=p.accelerator_class,
                cards=p.cards,
                device_indices=p.device_indices,
                nodes=p.nodes,
            )
            for p in job.placements
        ],
        reasons=[reason_to_proto(r) for r in job.reasons],
        exit_code=job.exit_code,
        request_id=job.request_id,
        create_time=time_to_proto(job.create_time),
        update_time=time_to_proto(job.update_time),
        start_time=time_to_proto(job.start_time),
        end_time=time_to_proto(job.end_time),
    )


def job_from_proto(msg: job_pb2.Job) -> Job:
    return Job(
        job_id=msg.job_id,
        spec=spec_from_proto(msg.spec),
        state=state_from_proto(msg.state),
        create_time=time_from_proto(msg.create_time),
        update_time=time_from_proto(msg.update_time),
        request_id=msg.request_id,
        attempt=msg.attempt,
        epoch=msg.epoch,
        placements=tuple(
            Placement(p.site, p.accelerator_class, p.cards, tuple(p.device_indices), nodes=p.nodes)
            for p in msg.placements
        ),
        reasons=tuple(reason_from_proto(r) for r in msg.reasons),
        exit_code=msg.exit_code if msg.HasField("exit_code") else None,
        start_time=time_from_proto(msg.start_time) if msg.HasField("start_time") else None,
        end_time=time_from_proto(msg.end_time) if msg.HasField("end_time") else None,
    )


def event_to_proto(event: JobEvent) -> job_pb2.JobEvent:
    return job_pb2.JobEvent(
        job_id=event.job_id,
        state=state_to_proto(event.state),
        attempt=event.attempt,
        site=event.site,
        message=event.message,
        time=time_to_proto(event.time),
        sequence=event.sequence,
    )


def event_from_proto(msg: job_pb2.JobEvent) -> JobEvent:
    return JobEvent(
        msg.job_id,
        state_from_proto(msg.state),
        time_from_proto(msg.time),
        msg.attempt,
        msg.site,
        msg.message,
        msg.sequence,
    )


def pool_from_proto(msg: site_pb2.Pool) -> Pool:
    if msg.offered > msg.total or msg.free > msg.offered:
        raise InvalidArgument(
            f"pool {msg.accelerator_class!r} reports total={msg.total} offered={msg.offered} free={msg.free};"
            " a site must report free <= offered <= total",
            reason="INCONSISTENT_CAPACITY",
        )
    return Pool(
        msg.accelerator_class,
        msg.total,
        msg.offered,
        msg.free,
        msg.cards_per_node,
        msg.interconnect,
        _pool_labels(msg.labels),
        msg.free_nodes if msg.HasField("free_nodes") else None,
        msg.largest_partial_free,
    )


def site_to_proto(site: SiteView) -> site_pb2.Site:
    return site_pb2.Site(
        name=site.name,
        connected=site.connected,
        draining=site.draining,
        pools=[pool_to_proto(p) for p in site.pools],
        agent_version=site.agent_version,
        last_seen_time=time_to_proto(site.last_seen),
        liveness=enum_to_proto(site_pb2.SiteLiveness, site.liveness),  # type: ignore[arg-type]
        liveness_reason=site.liveness_reason,
    )


def site_from_proto(msg: site_pb2.Site) -> SiteView:
    return SiteView(
        name=msg.name,
        connected=msg.connected,
        draining=msg.draining,
        pools=tuple(pool_from_proto(p) for p in msg.pools),
        agent_version=msg.agent_version,
        last_seen=time_from_proto(msg.last_seen_time) if msg.HasField("last_seen_time") else None,
        liveness=enum_from_proto(site_pb2.SiteLiveness, msg.liveness, "live"),
        liveness_reason=msg.liveness_reason,
    )


def candidate_to_proto(candidate: Candidate) -> job_service_pb2.SiteCandidate:
    return job_service_pb2.SiteCandidate(
        site=candidate.site,
        feasible=candidate.feasible,
        score=candidate.score,
        accelerator_class=candidate.accelerator_class,
        reasons=[reason_to_proto(r) for r in candidate.reasons],
    )


def candidate_from_proto(msg: job_service_pb2.SiteCandidate) -> Candidate:
    return Candidate(
        msg.site,
        msg.feasible,
        msg.score,
        msg.accelerator_class,
        tuple(reason_from_proto(r) for r in msg.reasons),
    )


def reserve_to_proto(command: ReserveCommand) -> site_pb2.Reserve:
    """Phase one of a gang part: hold the cards for `timeout`, for the Launch of `epoch`."""
    run = command.run
    return site_pb2.Reserve(
        reservation_id=command.reservation_id,
        job_id=command.job_id,
        accelerator_class=command.accelerator_class,
        cards=command.cards,
        timeout=duration_to_proto(command.timeout),
        tenant=command.tenant,
        project=command.project,
        run=job_pb2.StackRun(stack=run.stack, image=run.image, command=list(run.command)) if run else None,
        epoch=command.epoch,
        nodes=command.nodes,
    )
