"""The one validation of a job spec, whichever way it came in (a job file, CreateJob, ExplainJob).

Owns: the shape rules and limits of every field of `JobSpec` (names, labels, env, runs, images, commands, cards,
topology, capability, data tags, the reservation id) and of the spec as a whole (its size in bytes), as
`spec_problem` (the first problem, with its job-file path and the fix) and `check_spec` (INVALID_ARGUMENT).
`gateway.jobs.specfile` reports a problem at its file line, `gateway.jobs.service` refuses a spec from any
transport with it; the limits are written in the comments of proto/fedgate/v1/job.proto. It does not check a
spec against the federation (tenants, projects, classes known, runtime allowed): admission does, with the policy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.errors import InvalidArgument, Violation
from gateway.jobs.model import JobSpec

NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
NAME_HINT = "use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
ENV_HINT = "use up to 128 letters, digits and '_', not starting with a digit"
LABEL_KEY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._/-]{0,126}[A-Za-z0-9])?")
LABEL_HINT = "use 1-128 letters, digits, '.', '_', '/' and '-', starting and ending with a letter or digit"
# An image reference as registries write it: [registry[:port]/]path[:tag][@digest]; no spaces, no controls.
IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,511}")
IMAGE_HINT = "an image reference such as registry.example/team/trainer:1.2 (no spaces, at most 512 characters)"
RESERVATION_ID = re.compile(r"book:[a-z0-9-]{1,64}")
TAG_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TAG_HINT = "use up to 64 letters, digits, '.', '_' and '-' (quote codes such as NO)"

MAX_CARDS = 1_000_000
MAX_SITES = 64
MAX_NODES = 1024
"""Nodes one job may state (resources.nodes): a 1,024-node job is 8,192 cards of 8 per node."""
MAX_RUNS = 16
MAX_STACKS = 16
MAX_LABELS = 64
MAX_LABEL_VALUE = 256  # characters
MAX_ENV = 64
MAX_ENV_VALUE = 32 * 1024  # bytes (UTF-8)
MAX_ARGS = 256
MAX_COMMAND_BYTES = 64 * 1024  # all arguments of one run together (UTF-8)
MAX_SPEC_BYTES = 256 * 1024  # every string of the spec together (UTF-8): a ListJobs page stays small
MAX_VIOLATIONS = 32  # problems listed in one refusal: a spec of 10,000 bad labels gets a short answer
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class SpecProblem:
    """What is wrong, where (a path in job-file terms: ("spec", "env", "FOO")), and how to fix it."""

    path: tuple[str | int, ...]
    problem: str
    fix: str
    reason: str = "JOB_SPEC_INVALID"

    @property
    def field(self) -> str:
        return ".".join(str(p) for p in self.path)

    @property
    def wire_field(self) -> str:
        """The field as a path in CreateJobRequest (AIP-193's BadRequest): `spec.runs[0].image`,
        `spec.env["FOO"]`, `spec.resources.accelerator_class`; `spec` for the spec as a whole."""
        path = ["spec"]
        for step in self.path[1:]:
            if isinstance(step, int):
                path[-1] += f"[{step}]"
            elif len(path) > 1 and path[-1] in {"labels", "env"}:
                path[-1] += f'["{step}"]'
            else:
                path.append(_WIRE_NAMES.get(step, step))
        return ".".join(path)


_WIRE_NAMES = {"class": "accelerator_class", "priorityClass": "priority_class"}
"""Job-file names that differ from the proto's."""


def check_spec(spec: JobSpec) -> None:
    """Refuse a malformed spec (INVALID_ARGUMENT, JOB_SPEC_INVALID or BAD_CARD_COUNT) naming field and limit: the
    message states the first problem, the violations list every one (by their CreateJobRequest paths)."""
    problems = [problem for problem in _problems(spec) if problem is not None]
    if problems:
        found = problems[0]
        violations = [
            Violation(p.reason, f"{p.problem}; {p.fix}", field=p.wire_field) for p in problems[:MAX_VIOLATIONS]
        ]
        raise InvalidArgument(
            f"{found.field}: {found.problem}; {found.fix}",
            reason=found.reason,
            metadata={"field": found.wire_field},
            violations=violations,
        )


def spec_problem(spec: JobSpec) -> SpecProblem | None:
    """The first problem of `spec`, in job-file order, or None."""
    return next((problem for problem in _problems(spec) if problem is not None), None)


def _name(path: tuple[str | int, ...], value: str, *, optional: bool = True) -> SpecProblem | None:
    if (optional and not value) or NAME.fullmatch(value):
        return None
    return SpecProblem(path, f"{value[:64]!r} is not a name", NAME_HINT)


def _utf8(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


_META, _BODY = ("metadata",), ("spec",)


def _problems(spec: JobSpec) -> Iterable[SpecProblem | None]:
    """Every rule, in job-file order (None where a rule holds)."""
    yield from _metadata(spec)
    yield from _resources(spec)
    yield from _runs(spec)
    yield from _rest(spec)


def _metadata(spec: JobSpec) -> Iterable[SpecProblem | None]:
    meta = _META
    yield _name((*meta, "name"), spec.name)
    yield _name((*meta, "tenant"), spec.tenant, optional=False)
    yield _name((*meta, "project"), spec.project, optional=False)
    if len(spec.labels) > MAX_LABELS:
        yield SpecProblem((*meta, "labels"), f"has {len(spec.labels)} labels", f"keep at most {MAX_LABELS}")
    for key, value in spec.labels:
        if not LABEL_KEY.fullmatch(key):
            yield SpecProblem((*meta, "labels", key[:64]), f"label key {key[:64]!r} is malformed", LABEL_HINT)
        if len(value) > MAX_LABEL_VALUE or _CONTROL.search(value):
            yield SpecProblem(
                (*meta, "labels", key),
                "the value is too long or holds control characters",
                f"use at most {MAX_LABEL_VALUE} printable characters",
            )


def _resources(spec: JobSpec) -> Iterable[SpecProblem | None]:
    body = _BODY
    cards = spec.resources.cards
    if not 1 <= cards <= MAX_CARDS:
        fix = f"ask for 1 to {MAX_CARDS} cards"
        yield SpecProblem((*body, "resources", "cards"), f"{cards} cards", fix, "BAD_CARD_COUNT")
    nodes = spec.resources.nodes
    if not 0 <= nodes <= MAX_NODES:
        fix = f"state 1 to {MAX_NODES} nodes, or 0 to let the gateway choose"
        yield SpecProblem((*body, "resources", "nodes"), f"{nodes} nodes", fix, "BAD_RESOURCES")
    elif nodes and cards % nodes:
        fix = "ask for a number of cards that the nodes share evenly (cards = nodes x cards per node), or nodes 0"
        yield SpecProblem(
            (*body, "resources", "nodes"), f"{cards} cards do not split evenly over {nodes} nodes", fix, "BAD_RESOURCES"
        )
    yield _name((*body, "resources", "class"), spec.resources.accelerator_class)
    capability = spec.resources.capability
    if capability is not None:
        path = (*body, "resources", "capability")
        for what, number in (
            ("min_memory_gib", capability.min_memory_gib),
            ("min_bf16_tflops", capability.min_bf16_tflops),
        ):
            if not math.isfinite(number) or number < 0:
                yield SpecProblem((*path, what), f"{number} is not a non-negative number", "give 0 or more")
        if len(capability.stacks) > MAX_STACKS:
            yield SpecProblem((*path, "stacks"), f"lists {len(capability.stacks)} stacks", f"list at most {MAX_STACKS}")
        for index, stack in enumerate(capability.stacks):
            yield _name((*path, "stacks", index), stack, optional=False)


def _runs(spec: JobSpec) -> Iterable[SpecProblem | None]:
    body = _BODY
    if len(spec.runs) > MAX_RUNS:
        yield SpecProblem((*body, "runs"), f"has {len(spec.runs)} runs", f"keep at most {MAX_RUNS}, one per stack")
    for index, run in enumerate(spec.runs):
        path = (*body, "runs", index)
        yield _name((*path, "stack"), run.stack)
        if run.image and not IMAGE.fullmatch(run.image):
            yield SpecProblem((*path, "image"), f"{run.image[:64]!r} is not an image reference", IMAGE_HINT)
        if len(run.command) > MAX_ARGS:
            yield SpecProblem((*path, "command"), f"has {len(run.command)} arguments", f"keep at most {MAX_ARGS}")
        if any("\x00" in arg for arg in run.command):
            yield SpecProblem((*path, "command"), "an argument holds a NUL byte", "remove it")
        if sum(_utf8(arg) for arg in run.command) > MAX_COMMAND_BYTES:
            yield SpecProblem(
                (*path, "command"),
                f"is longer than {MAX_COMMAND_BYTES} bytes",
                "ship large scripts or data in the image or in storage the job reads, not in its command",
            )


def _rest(spec: JobSpec) -> Iterable[SpecProblem | None]:
    body, cards = _BODY, spec.resources.cards
    if len(spec.env) > MAX_ENV:
        yield SpecProblem((*body, "env"), f"has {len(spec.env)} variables", f"keep at most {MAX_ENV}")
    for key, value in spec.env:
        if not ENV_NAME.fullmatch(key):
            yield SpecProblem((*body, "env", key[:64]), f"{key[:64]!r} is not a variable name", ENV_HINT)
        if "\x00" in value or _utf8(value) > MAX_ENV_VALUE:
            yield SpecProblem(
                (*body, "env", key), "the value is too long or holds a NUL byte", f"keep it under {MAX_ENV_VALUE} bytes"
            )
    yield _name((*body, "priorityClass"), spec.priority_class)
    topology = spec.topology
    if not 1 <= topology.max_sites <= MAX_SITES:
        fix = f"use 1 to {MAX_SITES}"
        yield SpecProblem((*body, "topology", "max_sites"), f"{topology.max_sites} sites", fix)
    if not 0 <= topology.min_cards_per_site <= max(cards, 0):
        yield SpecProblem(
            (*body, "topology", "min_cards_per_site"),
            f"{topology.min_cards_per_site} is outside 0 to the job's {cards} cards",
            "lower it or raise cards",
        )
    for what, tag in (("classification", spec.data_classification), ("region", spec.data_region)):
        if tag and not TAG_VALUE.fullmatch(tag):
            yield SpecProblem((*body, "data", what), f"{tag[:64]!r} is malformed", TAG_HINT)
    if spec.reservation and not RESERVATION_ID.fullmatch(spec.reservation):
        yield SpecProblem(
            (*body, "reservation"),
            f"{spec.reservation[:64]!r} is not a reservation id",
            "use a reservation id as `fedgate reservation list` shows it, e.g. book:18c1f2a3b4c5d",
        )
    if spec.dataset and not NAME.fullmatch(spec.dataset):
        yield SpecProblem((*body, "dataset"), f"{spec.dataset[:64]!r} is not a dataset name", NAME_HINT)
    size = _spec_bytes(spec)
    if size > MAX_SPEC_BYTES:
        yield SpecProblem((), f"the spec is {size} bytes", f"keep a job spec under {MAX_SPEC_BYTES} bytes in all")


def _spec_bytes(spec: JobSpec) -> int:
    strings = [spec.tenant, spec.project, spec.name, spec.priority_class, spec.reservation, spec.dataset]
    strings += [spec.data_classification, spec.data_region, spec.resources.accelerator_class]
    strings += [s for pair in (*spec.labels, *spec.env) for s in pair]
    strings += [s for run in spec.runs for s in (run.stack, run.image, *run.command)]
    if spec.resources.capability is not None:
        strings += spec.resources.capability.stacks
    return sum(_utf8(s) for s in strings)
