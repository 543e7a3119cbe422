"""The `simulated` backend: attempts that start no process and simply last a while, for benchmarks.

Owns: how long a simulated attempt lasts (the job's `FEDGATE_SIM_DURATION_S` env, else its label
`fedgate.io/sim-duration-s`, else its max runtime, else the configured default), how it ends
(`FEDGATE_SIM_EXIT_CODE`, default 0; cancel ends it as if terminated by SIGTERM), which node of a multi-node
attempt ends it (`FEDGATE_SIM_FAIL_NODE` or the label `fedgate.io/sim-fail-node`: that node rank fails with the
exit code, 1 when none is given; otherwise the part's first node is named when it does not succeed, as a
multi-node attempt must), and one synthetic line of output that says how many nodes it has. One timer per
attempt on the event loop, no task and no thread, so thousands of attempts cost little. It does not model
devices, rendezvous or failures of its own.

    backend: {type: simulated, default_duration_s: 60}
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agents.backends.base import BackendSettings, ExitStatus, JobHandle, LaunchSpec
from agents.core.model import PoolSpec
from agents.errors import BackendError, LaunchFailed
from fedgate.common.sections import Section

DURATION_ENV = "FEDGATE_SIM_DURATION_S"
DURATION_LABEL = "fedgate.io/sim-duration-s"
EXIT_CODE_ENV = "FEDGATE_SIM_EXIT_CODE"
FAIL_NODE_ENV = "FEDGATE_SIM_FAIL_NODE"
FAIL_NODE_LABEL = "fedgate.io/sim-fail-node"
TERMINATED = ExitStatus(exit_code=128 + signal.SIGTERM, signal_number=signal.SIGTERM)


@dataclass(frozen=True)
class SimulatedOptions:
    default_duration_s: float = 60.0
    """Seconds an attempt lasts when the job names no duration and has no max runtime."""


def read_simulated_options(section: Section, base: Path) -> SimulatedOptions:
    return SimulatedOptions(default_duration_s=section.number("default_duration_s", 60.0, positive=True))


@dataclass
class SimulatedHandle:
    job_id: str
    epoch: int
    duration_s: float
    ending: ExitStatus
    """How it ends unless cancelled (of a multi-node attempt, with the node that ends it)."""
    outcome: asyncio.Future[ExitStatus]
    timer: asyncio.TimerHandle
    nodes: int = 1
    first_node: str = ""
    """The name of the part's first node of a multi-node attempt ("" for one node): named when it is cancelled."""

    @property
    def exit_code(self) -> int:
        return self.ending.exit_code

    @property
    def output(self) -> bytes:
        where = f" on {self.ending.node}" if self.ending.node else ""
        return (
            f"simulated job {self.job_id} epoch {self.epoch} on {self.nodes} node{'s' if self.nodes > 1 else ''}: "
            f"lasts {self.duration_s:g}s, exits with code {self.exit_code}{where}\n"
        ).encode()


class SimulatedBackend:
    """Pretends to run jobs. Its pools are exactly what the config declares."""

    def __init__(self, settings: BackendSettings) -> None:
        options = settings.options if isinstance(settings.options, SimulatedOptions) else SimulatedOptions()
        self._default_s = options.default_duration_s
        self._live: dict[tuple[str, int], SimulatedHandle] = {}

    @property
    def name(self) -> str:
        return "simulated"

    def pools(self, declared: Sequence[PoolSpec]) -> Sequence[PoolSpec]:
        return list(declared)

    async def launch(self, spec: LaunchSpec) -> SimulatedHandle:
        known = self._live.get((spec.job_id, spec.epoch))
        if known is not None:
            return known
        duration = self._duration(spec)
        ending = _ending(spec)
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[ExitStatus] = loop.create_future()
        timer = loop.call_later(duration, self._end, spec.job_id, spec.epoch, ending)
        first = f"node {spec.rendezvous.first_rank}" if len(spec.nodes) > 1 else ""
        handle = SimulatedHandle(spec.job_id, spec.epoch, duration, ending, outcome, timer, len(spec.nodes), first)
        self._live[(spec.job_id, spec.epoch)] = handle
        return handle

    async def adopt(self, spec: LaunchSpec, recorded: Mapping[str, object] | None = None) -> SimulatedHandle | None:
        return self._live.get((spec.job_id, spec.epoch))

    async def read_output(self, handle: JobHandle, offset: int, limit: int) -> bytes:
        output = _simulated(handle).output
        start = max(offset, 0)
        return output[start : start + max(limit, 0)]

    async def wait(self, handle: JobHandle) -> ExitStatus:
        return await asyncio.shield(_simulated(handle).outcome)

    async def cancel(self, handle: JobHandle, grace_s: float) -> None:
        sim = _simulated(handle)
        sim.timer.cancel()
        self._end(sim.job_id, sim.epoch, dataclasses.replace(TERMINATED, node=sim.first_node), sim)

    def _end(self, job_id: str, epoch: int, status: ExitStatus, handle: SimulatedHandle | None = None) -> None:
        handle = handle or self._live.get((job_id, epoch))
        if handle is None:
            return
        if self._live.get((job_id, epoch)) is handle:
            del self._live[(job_id, epoch)]
        if not handle.outcome.done():
            handle.outcome.set_result(status)

    def _duration(self, spec: LaunchSpec) -> float:
        named = (
            (f"env {DURATION_ENV}", spec.env.get(DURATION_ENV)),
            (f"label {DURATION_LABEL}", spec.labels.get(DURATION_LABEL)),
        )
        for source, raw in named:
            if raw is None or raw == "":
                continue
            try:
                value = float(raw)
            except ValueError:
                value = -1.0
            if not math.isfinite(value) or value < 0:
                raise LaunchFailed(f"job {spec.job_id}: {source} must be a number of seconds >= 0, got {raw!r}")
            return value
        return spec.max_runtime_s if spec.max_runtime_s > 0 else self._default_s


def _ending(spec: LaunchSpec) -> ExitStatus:
    """How the attempt ends: its exit code, and of a multi-node attempt that fails, the node that fails it."""
    raw = spec.env.get(EXIT_CODE_ENV, "0") or "0"
    if not raw.isdigit() or int(raw) > 255:
        raise LaunchFailed(f"job {spec.job_id}: env {EXIT_CODE_ENV} must be a whole number 0-255, got {raw!r}")
    exit_code = int(raw)
    first, count = spec.rendezvous.first_rank, len(spec.nodes)
    named = (
        (f"env {FAIL_NODE_ENV}", spec.env.get(FAIL_NODE_ENV)),
        (f"label {FAIL_NODE_LABEL}", spec.labels.get(FAIL_NODE_LABEL)),
    )
    for source, value in named:
        if value is None or value == "":
            continue
        if not value.isdigit() or not first <= int(value) < first + count:
            ranks = f"{first}-{first + count - 1}" if count > 1 else str(first)
            raise LaunchFailed(f"job {spec.job_id}: {source} must be a node rank of this part ({ranks}), got {value!r}")
        return ExitStatus(exit_code=exit_code or 1, node=f"node {int(value)}" if count > 1 else "")
    return ExitStatus(exit_code=exit_code, node=f"node {first}" if exit_code and count > 1 else "")


def _simulated(handle: JobHandle) -> SimulatedHandle:
    if not isinstance(handle, SimulatedHandle):
        raise BackendError(f"the simulated backend was given a foreign handle ({type(handle).__name__})")
    return handle
