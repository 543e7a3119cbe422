"""JSON encoding of jobs for the store's body column. Pure functions, one pair per noun.

Owns: the JSON body of a job row, in pairs (`job_to_json` / `job_from_json` and their parts).
"""

from __future__ import annotations

import functools
import json
from datetime import datetime, timedelta
from typing import Any

from gateway.jobs.model import Capability, Job, JobSpec, JobState, Placement, Reason, Resources, StackRun, Topology


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def spec_to_json(spec: JobSpec) -> dict[str, Any]:
    cap = spec.resources.capability
    return {
        "tenant": spec.tenant,
        "project": spec.project,
        "name": spec.name,
        "class": spec.resources.accelerator_class,
        "capability": None
        if cap is None
        else {
            "min_memory_gib": cap.min_memory_gib,
            "min_bf16_tflops": cap.min_bf16_tflops,
            "stacks": list(cap.stacks),
        },
        "cards": spec.resources.cards,
        "runs": [{"stack": r.stack, "image": r.image, "command": list(r.command)} for r in spec.runs],
        "max_runtime_s": spec.max_runtime.total_seconds(),
        "labels": [list(kv) for kv in spec.labels],
        "env": [list(kv) for kv in spec.env],
        "priority_class": spec.priority_class,
        "topology": [spec.topology.max_sites, spec.topology.min_cards_per_site],
        "data": [spec.data_classification, spec.data_region],
        "reservation": spec.reservation,
        "dataset": spec.dataset,
    }


def spec_from_json(data: dict[str, Any]) -> JobSpec:
    cap = data["capability"]
    return JobSpec(
        tenant=data["tenant"],
        project=data["project"],
        name=data["name"],
        resources=Resources(
            accelerator_class=data["class"],
            capability=None
            if cap is None
            else Capability(cap["min_memory_gib"], cap["min_bf16_tflops"], tuple(cap["stacks"])),
            cards=data["cards"],
        ),
        runs=tuple(StackRun(r["stack"], r["image"], tuple(r["command"])) for r in data["runs"]),
        max_runtime=timedelta(seconds=data["max_runtime_s"]),
        labels=tuple((k, v) for k, v in data["labels"]),
        env=tuple((k, v) for k, v in data["env"]),
        priority_class=data["priority_class"],
        topology=Topology(*data["topology"]),
        data_classification=data.get("data", ["", ""])[0],
        data_region=data.get("data", ["", ""])[1],
        reservation=data.get("reservation", ""),
        dataset=data.get("dataset", ""),
    )


def _placement_to_json(placement: Placement) -> list[Any]:
    state = placement.state.value if placement.state is not None else None
    row = [placement.site, placement.accelerator_class, placement.cards, list(placement.device_indices), state]
    return [*row, placement.nodes] if placement.nodes else row


def _placement_from_json(data: list[Any]) -> Placement:
    """Rows written before parts kept their state have four fields: such a part has not reported yet; rows
    written before node shapes have five: one node."""
    site, cls, cards, devices = data[:4]
    state = data[4] if len(data) > 4 else None
    nodes = int(data[5]) if len(data) > 5 else 0
    return Placement(site, cls, cards, tuple(devices), JobState(state) if state is not None else None, nodes)


def job_to_json(job: Job) -> str:
    body = json.dumps(
        {
            "state": job.state.value,
            "request_id": job.request_id,
            "owner": job.owner,
            "attempt": job.attempt,
            "epoch": job.epoch,
            "placements": [_placement_to_json(p) for p in job.placements],
            "reasons": [[r.stage, r.code, r.message, r.site] for r in job.reasons],
            "exit_code": job.exit_code,
            "create_time": _time(job.create_time),
            "update_time": _time(job.update_time),
            "start_time": _time(job.start_time),
            "end_time": _time(job.end_time),
            "request_fingerprint": job.request_fingerprint,
        },
        separators=(",", ":"),
    )
    # The same JSON object as one dumps() of the whole job, with the spec's text made once per spec: a job's
    # spec never changes, and every state change rewrites the body (a scheduling cycle, thousands of them).
    return f'{{"job_id":{json.dumps(job.job_id)},"spec":{_spec_text(job.spec)},{body[1:]}'


@functools.lru_cache(maxsize=16384)
def _spec_text(spec: JobSpec) -> str:
    return json.dumps(spec_to_json(spec), separators=(",", ":"))


def job_from_json(text: str) -> Job:
    data = json.loads(text)
    create_time = _parse_time(data["create_time"])
    update_time = _parse_time(data["update_time"])
    assert create_time is not None and update_time is not None
    return Job(
        job_id=data["job_id"],
        spec=spec_from_json(data["spec"]),
        state=JobState(data["state"]),
        create_time=create_time,
        update_time=update_time,
        request_id=data["request_id"],
        owner=data["owner"],
        attempt=data["attempt"],
        epoch=data["epoch"],
        placements=tuple(_placement_from_json(p) for p in data["placements"]),
        reasons=tuple(Reason(*r) for r in data["reasons"]),
        exit_code=data["exit_code"],
        start_time=_parse_time(data["start_time"]),
        end_time=_parse_time(data["end_time"]),
        request_fingerprint=data.get("request_fingerprint", ""),  # absent in rows written before it was kept
    )
