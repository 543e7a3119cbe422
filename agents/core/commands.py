"""What the gateway asks of the agent, as plain dataclasses.

Owns: the gateway -> agent nouns (`Welcome`, `Launch`, `Cancel`, `Preempt`, `Reserve`, `Commit`, `Abort`,
`Drain`, `UpdatesAcknowledged`, `UpdateRejected`) and the `GatewayCommand` union the runtime dispatches on,
plus the log relay's `LogRequest`, `LogCancel` and `LogCredit` (the `LogCommand` union, served by `agents.core.logs`).
Durations are seconds as floats (0 = not set). It does not own the wire format: `agents.transport.convert`
builds these from protobuf.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from fedgate.common.rendezvous import Rendezvous


@dataclass(frozen=True)
class Welcome:
    """The gateway's reply to Hello."""

    last_update_sequence: int
    """Highest update sequence the gateway has made durable; the agent replays what follows."""
    report_interval_s: float
    """How often to send a full capacity report; 0 = use the agent's configured interval."""
    site_lease_s: float = 0.0
    """The gateway's site lease: past it, a silent site's attempts are declared LOST (0 = none said)."""


@dataclass(frozen=True)
class Launch:
    """Run one attempt of a job. Idempotent by (job_id, epoch)."""

    job_id: str
    epoch: int
    attempt: int
    accelerator_class: str
    cards: int
    command: tuple[str, ...]
    """The program and its arguments; no shell is involved unless the command names one."""
    stack: str = ""
    """Software stack the run was built for (cuda, cann, ...); empty = any."""
    image: str = ""
    tenant: str = ""
    project: str = ""
    max_runtime_s: float = 0.0
    """Kill the attempt and report FAILED after this long; 0 = no limit."""
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    nodes: int = 0
    """Nodes the gateway placed this part on (0 or 1: one node); the devices come from that many whole nodes."""
    rendezvous: Rendezvous | None = None
    """The attempt's world as the gateway stated it; None: a one-site attempt on the nodes allocated."""


@dataclass(frozen=True)
class Cancel:
    job_id: str
    epoch: int
    reason: str = ""


@dataclass(frozen=True)
class Preempt:
    job_id: str
    epoch: int
    grace_s: float = 0.0
    """Time between SIGTERM and SIGKILL; 0 = the agent's configured grace."""


@dataclass(frozen=True)
class Reserve:
    """Hold cards: a gang part (no window: held `timeout_s` awaiting Commit or Abort, consumed by the Launch
    of `job_id` at `epoch`), or an advance reservation (`start_time` and `end_time` set)."""

    reservation_id: str
    job_id: str
    accelerator_class: str
    cards: int
    timeout_s: float = 0.0
    tenant: str = ""
    project: str = ""
    start: datetime | None = None
    """With `end`: an advance reservation of the window [start, end) (aware UTC); None for a gang part's hold."""
    end: datetime | None = None
    image: str = ""
    """The image that would run (a gang part), for the centre's registry terms."""
    stack: str = ""
    command: tuple[str, ...] = ()
    epoch: int = 0
    """The epoch of the Launch that will consume a gang part's hold."""
    nodes: int = 0
    """A gang part's nodes as its Launch will state them (0: one): the hold takes that many whole nodes."""


@dataclass(frozen=True)
class Commit:
    reservation_id: str


@dataclass(frozen=True)
class Abort:
    reservation_id: str
    reason: str = ""


@dataclass(frozen=True)
class Drain:
    draining: bool


@dataclass(frozen=True)
class UpdatesAcknowledged:
    """The gateway made every job update up to `sequence` durable; the journal may drop them."""

    sequence: int


@dataclass(frozen=True)
class UpdateRejected:
    """The gateway refused one of the agent's messages for good; a refused job update leaves the journal."""

    update_sequence: int
    """Sequence of the refused job update; 0 when the refused message was not a job update."""
    reason: str
    """Stable code, e.g. STALE_EPOCH or JOB_NOT_LEASED_TO_SITE."""
    message: str = ""
    last_update_sequence: int = 0
    """With SEQUENCE_REUSED: the gateway's cursor for this site; the update is sent again numbered above it."""


@dataclass(frozen=True)
class LogRequest:
    """Send the output of attempt (job_id, epoch) as log chunks tagged `stream_id`. Best effort: never
    journaled nor replayed after a reconnect."""

    stream_id: int
    job_id: str
    epoch: int
    follow: bool = False
    """Keep sending as the attempt writes, until it ends or a LogCancel comes."""
    tail_bytes: int = 0
    """Start this many bytes before the current end; 0 = from the beginning."""
    window_bytes: int = 0
    """The stream's first credit: bytes of output that may be sent before a LogCredit grants more; 0 (a gateway
    older than credit) = no limit."""


@dataclass(frozen=True)
class LogCancel:
    """Stop log stream `stream_id` (its reader went away)."""

    stream_id: int


@dataclass(frozen=True)
class LogCredit:
    """The reader of log stream `stream_id` consumed output: `bytes` more may be sent on it."""

    stream_id: int
    bytes: int


LogCommand = LogRequest | LogCancel | LogCredit
"""What the log server (`agents.core.logs`) handles; the runtime never sees these."""

GatewayCommand = Launch | Cancel | Preempt | Reserve | Commit | Abort | Drain | UpdatesAcknowledged | UpdateRejected
"""Everything the runtime handles after Welcome."""
