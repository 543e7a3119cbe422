"""The contract between the agent's runtime and a backend that actually runs jobs.

Owns: the `Backend` protocol with its MUST-level rules, what a backend is given (`BackendSettings`,
`LaunchSpec`) and what it gives back (`JobHandle`, `ExitStatus`). It does not own device allocation,
epochs, idempotency or reporting: the runtime does all of that before and after calling a backend, so a
backend only starts, watches and stops processes.
"""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from agents.core.model import PoolSpec
from agents.errors import BackendError
from fedgate.common import rendezvous
from fedgate.common.rendezvous import Rendezvous


@dataclass(frozen=True)
class BackendSettings:
    """The config's `backend:` section after validation."""

    type: str
    """Registry name of the backend, e.g. `local`."""
    workdir: Path
    """Folder under which each attempt gets `<job_id>/<epoch>/` for its files and logs (absolute)."""
    options: object = None
    """The type's own validated options (a frozen dataclass of that backend's), None for types without."""


@dataclass(frozen=True)
class LaunchSpec:
    """Everything a backend needs to start one attempt. Devices are already allocated by the runtime."""

    site: str
    job_id: str
    epoch: int
    attempt: int
    accelerator_class: str
    stack: str
    """Software stack (cuda, cann, dtk, ...) that decides the visible-devices variable; empty = none."""
    command: tuple[str, ...]
    devices: tuple[int, ...]
    """Device indices within the pool, assigned to this attempt alone."""
    image: str = ""
    tenant: str = ""
    project: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment from the job; the backend's FEDGATE_* variables take precedence over it."""
    max_runtime_s: float = 0.0
    """The job's runtime limit in seconds (0 = none). The runtime enforces it; a cluster backend may also
    hand it to its scheduler as a backstop."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """The job's labels from its spec (free-form; a backend may read hints such as the simulated duration)."""
    node_devices: tuple[tuple[int, ...], ...] = ()
    """The devices of each node of this part, in node order (node i has node rank rendezvous.first_rank + i);
    empty: one node with all of `devices`. A backend MUST run one task per node, each confined to its node's
    devices (a cluster backend, whose engine chooses devices, uses their count)."""
    rendezvous: Rendezvous = field(default_factory=Rendezvous)
    """The world the attempt's processes belong to (`fedgate.common.rendezvous`)."""

    @property
    def nodes(self) -> tuple[tuple[int, ...], ...]:
        """Each node's devices; one node holding every device when the launch named no node split."""
        return self.node_devices or (self.devices,)

    def rendezvous_values(self, node: int, master_addr: str, master_port: int | str) -> dict[str, str]:
        """The rendezvous values of this part's node `node` (0-based) for `fedgate.common.rendezvous.environment`,
        when rank 0's master is `master_addr`:`master_port` (the gateway's, when it chose them, win)."""
        world = self.rendezvous
        return {
            rendezvous.NNODES: str(max(world.nnodes, len(self.nodes))),
            rendezvous.NODE_RANK: str(world.first_rank + node),
            rendezvous.MASTER_ADDR: world.master_addr or master_addr,
            rendezvous.MASTER_PORT: str(world.master_port or master_port),
            rendezvous.WORLD_SIZE: str(max(world.world_size, len(self.devices))),
            rendezvous.NPROC_PER_NODE: str(len(self.nodes[node])),
        }

    def node_environment(self, node: int, master_addr: str, master_port: int | str) -> dict[str, str]:
        """Every rendezvous variable of node `node` (see `rendezvous_values`), under the stack's names too."""
        return rendezvous.environment(self.stack, self.rendezvous_values(node, master_addr, master_port))

    def job_environment(self) -> dict[str, str]:
        """The job's own env, then the attempt's FEDGATE_* identity, which the job cannot override. Backends add
        how the devices are named where they run (FEDGATE_DEVICES, FEDGATE_CARDS, visible-devices variables)."""
        env = dict(self.env)
        env.update(
            {
                "FEDGATE_JOB_ID": self.job_id,
                "FEDGATE_ATTEMPT": str(self.attempt),
                "FEDGATE_EPOCH": str(self.epoch),
                "FEDGATE_SITE": self.site,
                "FEDGATE_ACCELERATOR_CLASS": self.accelerator_class,
            }
        )
        return env


@dataclass(frozen=True)
class ExitStatus:
    """How an attempt's process ended."""

    exit_code: int
    """The exit code; 128+N when killed by signal N (the shell's convention)."""
    signal_number: int = 0
    """The signal that killed it, 0 if it exited by itself."""
    node: str = ""
    """Of a multi-node attempt: the node whose process ended it (the first to fail), e.g. `node 1 (host-b)`;
    empty for a one-node attempt or when every node succeeded."""

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and self.signal_number == 0

    def describe(self) -> str:
        where = f" on {self.node}" if self.node else ""
        if self.signal_number:
            try:
                name = signal.Signals(self.signal_number).name
            except ValueError:
                name = f"signal {self.signal_number}"
            return f"killed by {name}{where}"
        return f"exited with code {self.exit_code}{where}"

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitStatus:
        """Map a Python `returncode` (negative = killed by that signal) to an ExitStatus."""
        if returncode < 0:
            return cls(exit_code=128 - returncode, signal_number=-returncode)
        return cls(exit_code=returncode)


class JobHandle(Protocol):
    """A backend's reference to one running attempt. Opaque to the runtime beyond these fields."""

    @property
    def job_id(self) -> str: ...

    @property
    def epoch(self) -> int: ...


class Backend(Protocol):
    """Starts, watches and stops job attempts on one kind of scheduler.

    Rules every implementation MUST follow:
    - Methods are called from the agent's event loop; they MUST NOT block it (use asyncio subprocesses,
      async clients, or `asyncio.to_thread`).
    - `launch` MUST either return a handle of a started attempt or raise `LaunchFailed` with a message a
      model vendor can act on (empty command, missing executable, bad image). It MUST NOT raise for a job
      that merely fails later: that is `wait`'s exit status.
    - `wait` MUST return exactly once per handle, when the attempt has ended for any reason (its own exit,
      `cancel`, a crash). It MUST NOT be cancelled by a backend on its own.
    - `cancel` MUST ask the attempt to stop (SIGTERM or equivalent), and after `grace_s` seconds force it
      (SIGKILL or equivalent), stopping every process the attempt started. It MUST be safe to call more
      than once and on an attempt that has already ended.
    - `adopt` MUST find an attempt this site's agent started earlier for the same (job_id, epoch) (by the
      labels or job name the backend put on it, or by `recorded`: what `journal_record` said of it when it
      started, empty when the journal has nothing) and return a handle to it without starting anything, so a
      launch retried after a lost reply, or re-attached after an agent restart, never runs the job twice. A
      handle to an attempt that ended meanwhile is fine: `wait` then returns how it ended. It MUST return None
      only when the attempt cannot be running any more (then its devices are handed out again), and it is
      then reported LOST: the gateway queues the job again.
    - `wait` MAY raise `AttemptLost` when the attempt ended unobserved and left no record of how: it is
      reported LOST, not FAILED.
    - `read_output` MUST return the attempt's combined stdout/stderr bytes from `offset`, at most `limit`
      of them, and b"" at the current end (also after the attempt ended); it MUST NOT block for new output.
    - A backend MUST keep each attempt's files apart (`<workdir>/<job_id>/<epoch>/` for local) and MUST
      confine the attempt to the devices in `LaunchSpec.devices`.
    - A multi-node attempt (`LaunchSpec.nodes` has more than one node) MUST start one task per node, each with
      its node's rendezvous variables (`LaunchSpec.node_environment`), and is one attempt: the first task to
      end with a non-zero exit (or a signal) ends every other task, and `wait` returns that task's status once,
      with `ExitStatus.node` naming the node; it succeeds only when every task succeeded. `cancel` reaches
      every node.

    Five optional hooks, read with getattr because most backends have none:
    - `async def discover(self) -> None`: a backend that must look at its scheduler before it knows its pools
      (slurm's sinfo, kubernetes' node list) does that I/O here, never in `pools()`. `open_backend` awaits it
      once, before the runtime is built and calls `pools()`; it MUST raise BackendError naming the fix when the
      scheduler cannot be read, and `pools()` MUST raise BackendError if called before it ran.
    - `keeps_jobs: bool` (class attribute, default False): True when the engine keeps attempts running without
      the agent (Slurm, Kubernetes). A stopping agent then leaves its jobs running, journaled, and the next
      start re-attaches them with `adopt`; otherwise it stops them first.
    - `def journal_record(self, handle: JobHandle) -> Mapping[str, object]`: what the backend needs to find
      the attempt again after the agent was killed, beyond its (job_id, epoch) (local: its process group's
      identity). JSON-serialisable; the runtime journals it with the started attempt and gives it back to
      `adopt` as `recorded`.
    - `async def sweep(self, kept: Collection[tuple[str, int]]) -> None`: after a restart, once every journaled
      attempt was adopted or reported lost, stop whatever attempt of this site still runs that is not in `kept`
      (the journaled (job_id, epoch) pairs): one the agent started and was killed before it journaled it. Its
      devices are free in the agent's count, so it MUST have been forced to stop (SIGKILL or equivalent) before
      this returns.
    - `async def watch(self) -> None`: a backend with a loop of its own that must run as long as the agent
      (slurm's poll over every followed job, kubernetes' Jobs watch) runs it here; the agent owns it as a
      supervised task and cancels it when it stops. It MUST NOT return or raise before that: one failing step
      is logged and the next runs, and a watch that ends anyway stops the agent with a non-zero exit.
    """

    @property
    def name(self) -> str:
        """The registry name, sent to the gateway in Hello."""
        ...

    def pools(self, declared: Sequence[PoolSpec]) -> Sequence[PoolSpec]:
        """The pools this backend can serve, given what the config declares.

        MUST return only classes from `declared` and MUST NOT raise `offered` above what is declared
        (the centre's own share is the upper bound). A backend that discovers hardware may lower numbers,
        from what its `discover()` found: `pools()` itself does no I/O.
        """
        ...

    async def launch(self, spec: LaunchSpec) -> JobHandle:
        """Start one attempt. See the class rules."""
        ...

    async def adopt(self, spec: LaunchSpec, recorded: Mapping[str, object] | None = None) -> JobHandle | None:
        """The handle of an attempt already started for (spec.job_id, spec.epoch), or None. Starts nothing."""
        ...

    async def read_output(self, handle: JobHandle, offset: int, limit: int) -> bytes:
        """Up to `limit` bytes of the attempt's output from byte `offset`; b"" at the current end."""
        ...

    async def wait(self, handle: JobHandle) -> ExitStatus:
        """Return when the attempt has ended, with how it ended."""
        ...

    async def cancel(self, handle: JobHandle, grace_s: float) -> None:
        """Stop the attempt: polite signal, then force after `grace_s` seconds. Returns when it is gone."""
        ...


def read_output_file(path: Path, offset: int, limit: int) -> bytes:
    """`read_output` for backends whose attempts write one output file: up to `limit` bytes from `offset`,
    b"" at the end or when the file does not exist yet. Blocking: call it through `asyncio.to_thread`."""
    try:
        # The folder may belong to the job's user: never follow a link it put there (to the site's key, say),
        # never block on a FIFO, and read only a plain file with no other name (a hard link).
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise BackendError(f"the attempt's output file {path.name} cannot be read safely ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as output:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise BackendError(f"the attempt's output file {path.name} is not a plain file; it is not read")
        output.seek(max(offset, 0))
        return output.read(max(limit, 0))
