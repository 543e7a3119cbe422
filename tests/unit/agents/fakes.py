"""A fake backend for runtime tests: attempts end when the test says so, or when cancelled."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agents.backends.base import ExitStatus, JobHandle, LaunchSpec
from agents.core.model import PoolSpec
from agents.errors import LaunchFailed


def _future() -> asyncio.Future[ExitStatus]:
    return asyncio.get_running_loop().create_future()


@dataclass
class FakeHandle:
    job_id: str
    epoch: int
    spec: LaunchSpec
    exit: asyncio.Future[ExitStatus] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    cancel_graces: list[float] = field(default_factory=list)


class FakeBackend:
    """Records launches; `finish()` ends an attempt; `cancel` ends it as if SIGTERM killed it."""

    name = "fake"

    def __init__(self, *, refuse: str | None = None) -> None:
        self.launched: list[LaunchSpec] = []
        self.handles: dict[tuple[str, int], FakeHandle] = {}
        self.refuse = refuse
        self.output: dict[tuple[str, int], bytes] = {}

    def pools(self, declared: Sequence[PoolSpec]) -> Sequence[PoolSpec]:
        return list(declared)

    async def launch(self, spec: LaunchSpec) -> FakeHandle:
        if self.refuse:
            raise LaunchFailed(self.refuse)
        self.launched.append(spec)
        handle = FakeHandle(spec.job_id, spec.epoch, spec)
        self.handles[(spec.job_id, spec.epoch)] = handle
        return handle

    async def adopt(self, spec: LaunchSpec, recorded: Mapping[str, object] | None = None) -> FakeHandle | None:
        return self.handles.get((spec.job_id, spec.epoch))

    async def read_output(self, handle: JobHandle, offset: int, limit: int) -> bytes:
        assert isinstance(handle, FakeHandle)
        return self.output.get((handle.job_id, handle.epoch), b"")[offset : offset + limit]

    async def wait(self, handle: JobHandle) -> ExitStatus:
        assert isinstance(handle, FakeHandle)
        return await handle.exit

    async def cancel(self, handle: JobHandle, grace_s: float) -> None:
        assert isinstance(handle, FakeHandle)
        handle.cancel_graces.append(grace_s)
        if not handle.exit.done():
            handle.exit.set_result(ExitStatus.from_returncode(-signal.SIGTERM))

    def finish(self, job_id: str, epoch: int, exit_code: int = 0) -> None:
        self.handles[(job_id, epoch)].exit.set_result(ExitStatus(exit_code=exit_code))


class KeepingBackend(FakeBackend):
    """A fake engine that keeps its jobs while the agent is stopped, as Slurm and Kubernetes do: a watcher the
    stopping agent abandons must not take the job's end with it."""

    keeps_jobs = True

    async def wait(self, handle: JobHandle) -> ExitStatus:
        assert isinstance(handle, FakeHandle)
        return await asyncio.shield(handle.exit)
