"""The `local` backend: runs each attempt as a subprocess of the agent, on the agent's own machine.

Owns: the attempt's working directory `<workdir>/<job_id>/<epoch>/` with its `output.log` (stdout and
stderr), the process environment (the agent's, the job's, then FEDGATE_* and the stack's visible-devices
variable, which the job cannot override), running the command without a shell in its own process group,
and stopping that whole group. It does not check capacity, epochs or runtimes: the runtime does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agents.backends.base import BackendSettings, ExitStatus, JobHandle, LaunchSpec, read_output_file
from agents.backends.stacks import visible_devices_env
from agents.core.model import PoolSpec
from agents.errors import BackendError, LaunchFailed

log = logging.getLogger(__name__)

LOG_FILE = "output.log"

# A job id becomes a folder name: refuse anything that could climb out of the workdir.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


@dataclass
class LocalHandle:
    """One attempt started by the local backend."""

    job_id: str
    epoch: int
    process: asyncio.subprocess.Process
    directory: Path
    """The attempt's working directory; `output.log` is inside it."""

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_FILE


class LocalBackend:
    """Runs commands as local subprocesses. Good for a laptop that plays a centre, and for tests."""

    keeps_jobs = False
    """Its jobs are the agent's child processes: a stopping agent stops them (reported PREEMPTED) rather than
    leave orphans that no restarted agent could wait for, and a crashed agent's jobs are reported lost."""

    def __init__(self, settings: BackendSettings) -> None:
        self._workdir = settings.workdir

    @property
    def name(self) -> str:
        return "local"

    def pools(self, declared: Sequence[PoolSpec]) -> Sequence[PoolSpec]:
        # A plain machine cannot be asked what it has; the operator's declaration is the truth.
        return list(declared)

    async def launch(self, spec: LaunchSpec) -> LocalHandle:
        if not spec.command or not spec.command[0]:
            raise LaunchFailed(f"job {spec.job_id} has an empty command; give the run a command to execute")
        if not _SAFE_ID.match(spec.job_id):
            raise LaunchFailed(f"job id {spec.job_id!r} cannot be used as a folder name on this site")
        directory = self._workdir / spec.job_id / str(spec.epoch)
        env = self._environment(spec)
        executable = _resolve_executable(spec.command[0], env.get("PATH", os.defpath), directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            output = (directory / LOG_FILE).open("ab")
        except OSError as exc:
            raise LaunchFailed(f"cannot create the job folder {directory}: {exc.strerror}") from exc
        try:
            process = await asyncio.create_subprocess_exec(
                executable,
                *spec.command[1:],
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                cwd=directory,
                env=env,
                # Own session = own process group, so cancel can stop everything the job started.
                start_new_session=True,
            )
        except OSError as exc:
            raise LaunchFailed(f"cannot start {spec.command[0]!r}: {exc.strerror or exc}") from exc
        finally:
            output.close()  # the child holds its own copy of the descriptor
        log.debug("job %s epoch %d: started pid %d in %s", spec.job_id, spec.epoch, process.pid, directory)
        return LocalHandle(job_id=spec.job_id, epoch=spec.epoch, process=process, directory=directory)

    async def adopt(self, spec: LaunchSpec) -> LocalHandle | None:
        # A child process does not survive as our child across an agent restart, and within one agent run the
        # runtime's attempt table already makes launches idempotent: there is never anything to adopt here.
        return None

    async def read_output(self, handle: JobHandle, offset: int, limit: int) -> bytes:
        path = _local(handle).directory / LOG_FILE
        return await asyncio.to_thread(read_output_file, path, offset, limit)

    async def wait(self, handle: JobHandle) -> ExitStatus:
        process = _local(handle).process
        return ExitStatus.from_returncode(await process.wait())

    async def cancel(self, handle: JobHandle, grace_s: float) -> None:
        process = _local(handle).process
        # With start_new_session the group id is the leader's pid, and the kernel does not reuse a pid
        # while its group has members, so these signals reach only what the job started.
        group = process.pid
        _signal_group(group, signal.SIGTERM)
        if process.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), timeout=max(grace_s, 0.0))
        # Children may outlive the leader or ignore SIGTERM; the grace is over for all of them.
        _signal_group(group, signal.SIGKILL)
        await process.wait()

    def _environment(self, spec: LaunchSpec) -> dict[str, str]:
        # The agent's own FEDGATE_* settings (credentials paths, tokens) never reach a job.
        env = {k: v for k, v in os.environ.items() if not k.startswith("FEDGATE_")}
        env.update(spec.job_environment())
        env["FEDGATE_DEVICES"] = ",".join(str(d) for d in spec.devices)
        env.update(visible_devices_env(spec.stack, spec.devices))
        return env


def _resolve_executable(program: str, search_path: str, cwd: Path) -> str:
    """Find the program as exec would, so a typo is a clear launch failure instead of a crash."""
    if os.sep in program:
        candidate = Path(program) if Path(program).is_absolute() else cwd / program
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
        problem = "is not executable" if candidate.is_file() else "does not exist"
        raise LaunchFailed(f"executable {program!r} {problem} on this site")
    found = shutil.which(program, path=search_path)
    if found is None:
        raise LaunchFailed(f"executable {program!r} was not found on this site's PATH")
    return found


def _signal_group(group: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def _local(handle: JobHandle) -> LocalHandle:
    if not isinstance(handle, LocalHandle):
        raise BackendError(f"the local backend was given a foreign handle ({type(handle).__name__})")
    return handle
