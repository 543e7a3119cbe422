"""The job file format (`apiVersion: fedgate.io/v1`, `kind: Job`) that model vendors write.

Owns: parsing a job YAML file strictly into `gateway.jobs.model.JobSpec` (unknown keys, wrong types and
impossible values refused with file, line and fix), the inverse `spec_to_dict` for `-o yaml|json`, and the
duration syntax (`90s`, `10m`, `2h`, `1h30m`, `2d`, integer seconds). It does not check a job against the
federation (tenants, projects, known accelerator classes): admission does that with the policy in hand.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from fedgate.common.fields import MISSING, FieldReader
from fedgate.common.yaml import KeyPath, load_yaml
from gateway.errors import ConfigError, InvalidArgument
from gateway.jobs.model import Capability, JobSpec, Resources, StackRun, Topology
from gateway.jobs.validate import (
    ENV_HINT,
    ENV_NAME,
    IMAGE,
    IMAGE_HINT,
    LABEL_HINT,
    LABEL_KEY,
    MAX_CARDS,
    MAX_NODES,
    NAME,
    NAME_HINT,
    RESERVATION_ID,
    TAG_HINT,
    TAG_VALUE,
    spec_problem,
)

API_VERSION = "fedgate.io/v1"
KIND = "Job"
DEFAULT_MAX_RUNTIME = timedelta(hours=1)
MAX_RUNTIME_LIMIT = timedelta(days=30)

_TOP = ("apiVersion", "kind", "metadata", "spec")
_METADATA = ("name", "tenant", "project", "labels")
_SPEC = ("resources", "runs", "maxRuntime", "env", "priorityClass", "topology", "data", "reservation", "dataset")
_DATA = ("classification", "region")
_RESOURCES = ("class", "capability", "cards")
_CAPABILITY = ("min_memory_gib", "min_bf16_tflops", "stacks")
_RUN = ("stack", "image", "command")
_TOPOLOGY = ("max_sites", "min_cards_per_site")

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_DURATION_HINT = "write a duration such as 90s, 10m, 2h, 1h30m, 2d or a whole number of seconds"


def parse_duration(value: str | int) -> timedelta:
    """`"90s"`, `"10m"`, `"2h"`, `"1h30m"`, `"2d"`, `"3600"` or `3600` -> timedelta. Negative is refused."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value >= 0:
            return timedelta(seconds=value)
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return timedelta(seconds=int(text))
        match = _DURATION.fullmatch(text)
        if text and match:
            days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
            return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    raise InvalidArgument(f"{value!r} is not a duration: {_DURATION_HINT}", reason="BAD_DURATION")


def format_duration(delta: timedelta) -> str:
    """The inverse of parse_duration, whole seconds: 5400 s -> "1h30m", 0 -> "0s"."""
    total = int(delta.total_seconds())
    sign = "-" if total < 0 else ""
    total = abs(total)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + ("".join(parts) or "0s")


def load_job_spec(path: str | Path, *, default_tenant: str = "") -> JobSpec:
    """Read and parse a job file. `default_tenant` fills `metadata.tenant` when the file leaves it out
    (the CLI passes the tenant of the caller's certificate)."""
    return parse_job_spec(Path(path), str(path), default_tenant=default_tenant)


def parse_job_spec(source: str | bytes | Path, source_name: str | None = None, *, default_tenant: str = "") -> JobSpec:
    """Parse job YAML (text, bytes or a Path). Raises ConfigError naming file, line, field and fix."""
    fields = FieldReader(load_yaml(source, source_name or "<job>", error=ConfigError))
    fields.document(API_VERSION, KIND, _TOP, "start from an example in examples/jobs/")
    # Read in file order, so the first mistake reported is the first one in the file.
    metadata_required = ("project",) if default_tenant else ("tenant", "project")
    fields.mapping(("metadata",), allowed=_METADATA, required=metadata_required)
    tenant = fields.string(("metadata", "tenant"), default=default_tenant or None, pattern=NAME, hint=NAME_HINT)
    project = fields.string(("metadata", "project"), pattern=NAME, hint=NAME_HINT)
    name = fields.string(("metadata", "name"), default="", pattern=NAME, hint=NAME_HINT)
    labels = fields.string_map(("metadata", "labels"), key_pattern=LABEL_KEY, key_hint=LABEL_HINT)
    fields.mapping(("spec",), allowed=_SPEC, required=("resources", "runs"))
    resources = read_resources(fields, ("spec", "resources"), nodes=True)
    spec = JobSpec(
        tenant=tenant,
        project=project,
        name=name,
        labels=labels,
        resources=resources,
        runs=_runs(fields, ("spec", "runs")),
        max_runtime=_max_runtime(fields, ("spec", "maxRuntime")),
        env=fields.string_map(("spec", "env"), key_pattern=ENV_NAME, key_hint=ENV_HINT),
        priority_class=fields.string(("spec", "priorityClass"), default="", pattern=NAME, hint=NAME_HINT),
        topology=_topology(fields, ("spec", "topology"), resources.cards),
        **_data(fields, ("spec", "data")),
        reservation=fields.string(
            ("spec", "reservation"),
            default="",
            pattern=RESERVATION_ID,
            hint="use a reservation id as `fedgate reservation list` shows it, e.g. book:18c1f2a3b4c5d",
        ),
        dataset=fields.string(("spec", "dataset"), default="", pattern=NAME, hint=NAME_HINT),
    )
    if resources.capability is not None:
        for index, stack in enumerate(resources.capability.stacks):
            if spec.run_for(stack) is None:
                raise fields.error(
                    ("spec", "resources", "capability", "stacks", index),
                    f"the job accepts stack {stack!r} but has no run for it",
                    f"add a run with stack: {stack} (or one without a stack), or drop {stack} from stacks",
                )
    # The limits every entry point shares (sizes in bytes, counts): the same check CreateJob makes.
    problem = spec_problem(spec)
    if problem is not None:
        raise fields.error(problem.path, problem.problem, problem.fix)
    return spec


def _data(fields: FieldReader, path: KeyPath) -> dict[str, str]:
    """The job's data for residency: `data: {classification: personal, region: cn-east}`."""
    fields.mapping(path, allowed=_DATA, required=("classification",), optional=True)
    if fields.value(path) is MISSING:
        return {}
    return {
        "data_classification": fields.string((*path, "classification"), pattern=TAG_VALUE, hint=TAG_HINT),
        "data_region": fields.string((*path, "region"), default="", pattern=TAG_VALUE, hint=TAG_HINT),
    }


def read_resources(fields: FieldReader, path: KeyPath, *, nodes: bool = False) -> Resources:
    """`resources: {class | capability, cards}` as jobs and reservations write it; a job may add `nodes`
    (its shape: cards / nodes per node; 0, the default, lets the gateway choose)."""
    data = fields.mapping(path, allowed=(*_RESOURCES, "nodes") if nodes else _RESOURCES, required=("cards",))
    if ("class" in data) == ("capability" in data):
        raise fields.error(
            path,
            "give exactly one of class and capability",
            "name a class (class: ascend-910b) or describe a capability "
            "(capability: {min_memory_gib: 64, stacks: [cuda]}), not both",
        )
    cards = fields.integer((*path, "cards"), minimum=1, maximum=MAX_CARDS)
    count = fields.integer((*path, "nodes"), default=0, minimum=0, maximum=MAX_NODES) if nodes else 0
    if "class" in data:
        hint = "use a catalogue id such as ascend-910b or nvidia-h100"
        cls = fields.string((*path, "class"), pattern=NAME, hint=hint)
        return Resources(accelerator_class=cls, cards=cards, nodes=count)
    cap_path = (*path, "capability")
    cap = fields.mapping(cap_path, allowed=_CAPABILITY)
    if not cap:
        raise fields.error(
            cap_path,
            "an empty capability matches nothing in particular",
            "set at least one of " + ", ".join(_CAPABILITY),
        )
    stacks = fields.strings((*cap_path, "stacks"), pattern=NAME, hint="use a stack name such as cuda, cann or dtk")
    if len(set(stacks)) != len(stacks):
        raise fields.error((*cap_path, "stacks"), "lists a stack twice", "list each stack once")
    capability = Capability(
        min_memory_gib=fields.number((*cap_path, "min_memory_gib"), default=0.0, minimum=0),
        min_bf16_tflops=fields.number((*cap_path, "min_bf16_tflops"), default=0.0, minimum=0),
        stacks=stacks,
    )
    return Resources(capability=capability, cards=cards, nodes=count)


def _runs(fields: FieldReader, path: KeyPath) -> tuple[StackRun, ...]:
    items = fields.sequence(path)
    if not items:
        raise fields.error(path, "needs at least one run", "add - {stack: cuda, command: [python, train.py]}")
    runs: list[StackRun] = []
    for index in range(len(items)):
        item = (*path, index)
        fields.mapping(item, allowed=_RUN)
        stack = fields.string((*item, "stack"), default="", pattern=NAME, hint="use a stack name such as cuda or cann")
        if any(run.stack == stack for run in runs):
            what = f"stack {stack!r}" if stack else "a run without a stack"
            raise fields.error((*item, "stack"), f"{what} appears twice", "keep one run per stack")
        image = fields.string((*item, "image"), default="", pattern=IMAGE, hint=IMAGE_HINT)
        command = fields.strings((*item, "command"))
        if fields.value((*item, "command")) is not MISSING and (not command or not command[0]):
            raise fields.error((*item, "command"), "is empty", "give the program and its arguments: [python, train.py]")
        if not command and not image:
            raise fields.error(item, "gives neither a command nor an image", "add command: [...] or image: ...")
        runs.append(StackRun(stack=stack, image=image, command=command))
    return tuple(runs)


def _max_runtime(fields: FieldReader, path: KeyPath) -> timedelta:
    value = fields.value(path)
    if value is MISSING:
        return DEFAULT_MAX_RUNTIME
    try:
        runtime = parse_duration(value)
    except InvalidArgument:
        raise fields.error(path, f"{value!r} is not a duration", _DURATION_HINT) from None
    if runtime <= timedelta(0) or runtime > MAX_RUNTIME_LIMIT:
        raise fields.error(
            path,
            f"must be more than 0 and at most {format_duration(MAX_RUNTIME_LIMIT)}",
            "split longer work into several jobs with checkpoints",
        )
    return runtime


def _topology(fields: FieldReader, path: KeyPath, cards: int) -> Topology:
    if not fields.mapping(path, allowed=_TOPOLOGY, optional=True):
        return Topology()
    topology = Topology(
        max_sites=fields.integer((*path, "max_sites"), default=1, minimum=1, maximum=64),
        min_cards_per_site=fields.integer((*path, "min_cards_per_site"), default=0, minimum=0),
    )
    if topology.min_cards_per_site > cards:
        raise fields.error(
            (*path, "min_cards_per_site"), f"is more than the job's {cards} cards", "lower it or raise cards"
        )
    return topology


def _number(value: float) -> int | float:
    return int(value) if value.is_integer() else value


def spec_to_dict(spec: JobSpec) -> dict[str, Any]:
    """The job file form of a spec, defaults left out; `parse_job_spec` of its YAML gives back `spec`."""
    metadata: dict[str, Any] = {"tenant": spec.tenant, "project": spec.project}
    if spec.name:
        metadata = {"name": spec.name, **metadata}
    if spec.labels:
        metadata["labels"] = dict(spec.labels)
    resources: dict[str, Any] = {}
    cap = spec.resources.capability
    if cap is None:
        resources["class"] = spec.resources.accelerator_class
    else:
        capability: dict[str, Any] = {}
        if cap.min_memory_gib:
            capability["min_memory_gib"] = _number(cap.min_memory_gib)
        if cap.min_bf16_tflops:
            capability["min_bf16_tflops"] = _number(cap.min_bf16_tflops)
        if cap.stacks:
            capability["stacks"] = list(cap.stacks)
        resources["capability"] = capability
    resources["cards"] = spec.resources.cards
    if spec.resources.nodes:
        resources["nodes"] = spec.resources.nodes
    runs = []
    for run in spec.runs:
        entry: dict[str, Any] = {}
        if run.stack:
            entry["stack"] = run.stack
        if run.image:
            entry["image"] = run.image
        if run.command:
            entry["command"] = list(run.command)
        runs.append(entry)
    body: dict[str, Any] = {
        "resources": resources,
        "runs": runs,
        "maxRuntime": format_duration(spec.max_runtime),
    }
    if spec.env:
        body["env"] = dict(spec.env)
    if spec.priority_class:
        body["priorityClass"] = spec.priority_class
    if spec.topology != Topology():
        body["topology"] = {
            "max_sites": spec.topology.max_sites,
            "min_cards_per_site": spec.topology.min_cards_per_site,
        }
    if spec.data_classification:
        body["data"] = {"classification": spec.data_classification}
        if spec.data_region:
            body["data"]["region"] = spec.data_region
    if spec.reservation:
        body["reservation"] = spec.reservation
    if spec.dataset:
        body["dataset"] = spec.dataset
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": body}
