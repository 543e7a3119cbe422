"""The job nouns as plain dataclasses: specs, states and their legal transitions, placements, reasons, events.

Owns: the shape and the legal state transitions of a job. It does not do I/O and knows nothing of gRPC;
`gateway.transport.convert` translates these to and from the contract.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta


class JobState(enum.StrEnum):
    QUEUED = "QUEUED"
    RESERVING = "RESERVING"
    DISPATCHED = "DISPATCHED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    PREEMPTED = "PREEMPTED"
    LOST = "LOST"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def holds_capacity(self) -> bool:
        """True while the job holds (or is about to hold) cards at a site."""
        return self in {JobState.RESERVING, JobState.DISPATCHED, JobState.RUNNING}


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.REJECTED})
# An attempt ended but the job goes on (queued again or failed): the attempt's card-hours count in usage.
ATTEMPT_ENDS = frozenset({JobState.PREEMPTED, JobState.LOST})

# Legal transitions. A site may only move a job along these edges; anything else is refused.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    # QUEUED -> FAILED: the job can never run (the reservation it named is over).
    JobState.QUEUED: frozenset({JobState.RESERVING, JobState.DISPATCHED, JobState.CANCELLED, JobState.FAILED}),
    JobState.RESERVING: frozenset({JobState.DISPATCHED, JobState.QUEUED, JobState.CANCELLED}),
    # DISPATCHED -> QUEUED: the site handed the lease back without starting the job.
    JobState.DISPATCHED: frozenset(
        {JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.LOST, JobState.QUEUED}
    ),
    JobState.RUNNING: frozenset(
        {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.PREEMPTED, JobState.LOST}
    ),
    JobState.PREEMPTED: frozenset({JobState.QUEUED, JobState.FAILED, JobState.CANCELLED}),
    JobState.LOST: frozenset({JobState.QUEUED, JobState.FAILED, JobState.CANCELLED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.REJECTED: frozenset(),
}


def can_transition(current: JobState, new: JobState) -> bool:
    return new in TRANSITIONS[current]


@dataclass(frozen=True)
class Capability:
    """Capacity by capability instead of a named class. Units: GiB per card, dense BF16 TFLOPS per card."""

    min_memory_gib: float = 0.0
    min_bf16_tflops: float = 0.0
    stacks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resources:
    accelerator_class: str = ""
    capability: Capability | None = None
    cards: int = 1
    nodes: int = 0
    """Nodes the job runs on, cards / nodes each (at most the pool's cards_per_node); 0: the gateway chooses
    (one node when the cards fit one, else whole free nodes). `gateway.placement.nodes` holds the rule."""


@dataclass(frozen=True)
class StackRun:
    """What to run on one software stack; stack "" means any stack."""

    stack: str = ""
    image: str = ""
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class Topology:
    max_sites: int = 1
    min_cards_per_site: int = 0


@dataclass(frozen=True)
class JobSpec:
    tenant: str
    project: str
    resources: Resources
    runs: tuple[StackRun, ...]
    name: str = ""
    max_runtime: timedelta = timedelta(hours=1)
    labels: tuple[tuple[str, str], ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    priority_class: str = ""
    topology: Topology = field(default_factory=Topology)
    # What data the job processes, for residency rules: its classification (e.g. personal) and where it is from.
    data_classification: str = ""
    data_region: str = ""
    # An advance reservation of the job's project to run inside (it waits for the window); "" for none.
    reservation: str = ""
    # A dataset the policy lists (network.datasets) that the job reads: placement counts copying it; "" for none.
    dataset: str = ""

    def run_for(self, stack: str) -> StackRun | None:
        """The run for a software stack: an exact match first, then a stack-agnostic run."""
        for run in self.runs:
            if run.stack == stack:
                return run
        for run in self.runs:
            if not run.stack:
                return run
        return None


@dataclass(frozen=True)
class Reason:
    """One link of a reason chain. stage: policy, offers, capacity, dispatch, site."""

    stage: str
    code: str
    message: str
    site: str = ""


@dataclass(frozen=True)
class Placement:
    site: str
    accelerator_class: str
    cards: int
    device_indices: tuple[int, ...] = ()
    state: JobState | None = None
    """The last state this part's site reported for the current attempt (None until it reports). Kept for
    gangs, where the job's state is how its parts add up (`gateway.gangs.parts`); stored, not sent on the wire."""
    nodes: int = 0
    """Nodes this part runs on, chosen from the pool's node shape (`gateway.placement.nodes`); 0: one node."""


@dataclass(frozen=True)
class Job:
    job_id: str
    spec: JobSpec
    state: JobState
    create_time: datetime
    update_time: datetime
    request_id: str = ""
    owner: str = ""
    attempt: int = 0
    epoch: int = 0
    placements: tuple[Placement, ...] = ()
    reasons: tuple[Reason, ...] = ()
    exit_code: int | None = None
    """The exit code its site reported for the attempt's end; None while it runs or when no site reported one."""
    start_time: datetime | None = None
    end_time: datetime | None = None
    # The canonical digest of the spec it was created from (`gateway.trust.replay`): a retry with the same
    # request id must send the same spec. Stored with the job, so that this holds across restarts.
    request_fingerprint: str = ""

    def evolve(self, **changes: object) -> Job:
        """A copy with `changes` (Job field names only). What `dataclasses.replace` does without re-running
        `__init__` through the frozen setattr, several times cheaper: a scheduling cycle evolves thousands."""
        if not _JOB_FIELDS.issuperset(changes):
            raise TypeError(f"Job has no field {', '.join(sorted(set(changes) - _JOB_FIELDS))}")
        new = object.__new__(Job)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(p.site for p in self.placements)


_JOB_FIELDS = frozenset(f.name for f in fields(Job))


@dataclass(frozen=True)
class JobEvent:
    job_id: str
    state: JobState
    time: datetime
    attempt: int = 0
    site: str = ""
    message: str = ""
    sequence: int = 0
