"""What the agent tells the gateway, as plain dataclasses: job states, job updates, pools and capacity.

Owns: the agent -> gateway nouns (`JobUpdate`, `PoolCapacity`, `RunningJob`, `ReserveReply`) and the pool a
centre declares (`PoolSpec`); the terms it reports are `fedgate.common.terms.SiteTerms`, shared with the
gateway. It does not own the wire format (`agents.transport.convert` maps these to and from protobuf) nor the
gateway -> agent commands (`agents.core.commands`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


class JobState(enum.Enum):
    """The states an agent reports. Names match `fedgate.v1.JobState` without the `JOB_STATE_` prefix."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    PREEMPTED = "PREEMPTED"
    LOST = "LOST"

    @property
    def is_final(self) -> bool:
        return self is not JobState.RUNNING


@dataclass(frozen=True)
class PoolSpec:
    """A pool of identical accelerators as the centre declares it in the agent config."""

    accelerator_class: str
    """Canonical class id from the accelerator catalogue, e.g. `ascend-910b`."""
    cards: int
    """Cards the centre has of this class (> 0)."""
    offered: int
    """Cards offered to the federation (0..cards). Federated jobs get device indices 0..offered-1."""
    cards_per_node: int
    """Cards per node, the shape the gateway packs gangs against; allocation prefers one node per job."""
    interconnect: str = ""
    """Interconnect between the cards of a node (nvlink, hccs, pcie, ...); informational."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Free-form labels the gateway's policies may match (zone, owner, ...)."""
    stack: str = ""
    """Software stack of the class (cuda, cann, ...), used when a launch names none; empty = unknown."""


@dataclass(frozen=True)
class PoolCapacity:
    """One pool in a capacity report: what the site has, offers, and has free right now."""

    accelerator_class: str
    total: int
    offered: int
    free: int
    """offered minus cards held by federated jobs, never below 0."""
    cards_per_node: int
    interconnect: str
    labels: Mapping[str, str]
    free_nodes: int | None = None
    """Nodes whose cards_per_node cards are all free (None when cards_per_node is 0: no node shape)."""
    largest_partial_free: int = 0
    """The most free cards on one partly used node (below cards_per_node)."""


@dataclass(frozen=True)
class JobUpdate:
    """A job attempt changed state at the site. `sequence` is per site and strictly increasing."""

    job_id: str
    epoch: int
    state: JobState
    sequence: int
    time: datetime
    """When the agent saw the change (UTC, timezone-aware)."""
    exit_code: int = 0
    """The process's exit code; 128+N when it was killed by signal N; 0 when it never ran."""
    message: str = ""
    device_indices: tuple[int, ...] = ()
    lease_returned: bool = False
    """The site declined to start the attempt (draining, no capacity): the job goes back to the queue."""
    receipt_record: bytes = b""
    """On the terminal update of an attempt that started: the serialised, signed UsageRecord (else empty)."""
    receipt_signature: bytes = b""
    """The site's signature over `receipt_record`."""


@dataclass(frozen=True)
class RunningJob:
    """An attempt the agent is running, listed in Hello so the gateway can reconcile after a reconnect."""

    job_id: str
    epoch: int
    state: JobState


@dataclass(frozen=True)
class ReserveReply:
    """The agent's answer to a two-phase Reserve."""

    reservation_id: str
    accepted: bool
    reason: str = ""
    free: int = 0
    """Cards of the class still free for the federation after this answer (for an advance reservation: in its
    window)."""
