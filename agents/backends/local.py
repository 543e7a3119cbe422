"""The `local` backend: runs each attempt as a subprocess of the agent, on the agent's own machine.

Owns: the attempt's working directory `<workdir>/<job_id>/<epoch>/` with its `output.log` (stdout and
stderr) and `exit_code` (owned by the job user), the process environment (the allowlisted part of the agent's,
HOME the attempt folder, the job's, then FEDGATE_* and the stack's visible-devices variable, which the job cannot
override: `agents.backends.localguard`), running the command without a shell under a small wrapper
(`agents.backends.localproc`) in its own process group, as the job user (`nobody` by default when the agent is
root: `localguard.job_user`), stopping that whole group, and finding an
attempt again after the agent was killed: the journal keeps the group's identity (`journal_record`), and
`adopt` follows it if it still runs, reports how it ended if its wrapper recorded that, and otherwise ends
whatever is left of its group and reports it gone, so its devices are never handed out while it lives. It
does not check capacity, epochs or runtimes: the runtime does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agents.backends import localguard, localproc
from agents.backends.base import BackendSettings, ExitStatus, JobHandle, LaunchSpec, read_output_file
from agents.backends.localproc import ProcessIdentity
from agents.backends.stacks import visible_devices_env
from agents.core.model import PoolSpec
from agents.errors import AttemptLost, BackendError, ConfigError, LaunchFailed

log = logging.getLogger(__name__)

LOG_FILE = "output.log"
SWEEP_WAIT_S = 5.0
"""How long `sweep` waits for a group it killed to be gone (SIGKILL cannot be ignored: only a hung kernel call
makes it wait that long)."""

# A job id becomes a folder name: refuse anything that could climb out of the workdir.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


@dataclass
class LocalHandle:
    """One attempt started by the local backend (by this agent run, or adopted from an earlier one)."""

    job_id: str
    epoch: int
    leader: ProcessIdentity
    """The attempt's wrapper, leader of its process group (the group id is its pid)."""
    directory: Path
    """The attempt's working directory; `output.log` and, once the command ended, `exit_code` are inside."""
    process: asyncio.subprocess.Process | None = None
    """The wrapper as this agent's child; None when adopted after a restart (it is nobody's child of ours)."""
    forced: bool = False
    """Set once `cancel` sent SIGKILL to the group, which may leave no exit file behind."""

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_FILE

    @property
    def group(self) -> int:
        return self.leader.pid


class LocalBackend:
    """Runs commands as local subprocesses. Good for a laptop that plays a centre, and for tests."""

    keeps_jobs = False
    """Its jobs are the agent's child processes: a stopping agent stops them (reported PREEMPTED) rather than
    leave them without anyone watching. An agent killed outright cannot stop them: the restarted agent adopts
    them from the journal (`adopt`)."""

    def __init__(self, settings: BackendSettings) -> None:
        self._workdir = settings.workdir
        options = settings.options
        self._options = options if isinstance(options, localguard.LocalOptions) else localguard.LocalOptions()
        self._user = localguard.job_user(self._options)
        """Whom jobs run as; None: the agent's own user (an agent that is not root)."""
        self._python = localguard.wrapper_python(self._user, sys.executable)
        if self._user is not None and not localguard.can_reach(self._workdir / "job", self._user):
            raise ConfigError(
                f"the local backend runs jobs as {self._user.name!r}, who cannot reach the workdir {self._workdir}; "
                "make the folders above it traversable (chmod o+x) or choose a workdir elsewhere"
            )
        self._fence_s = localproc.read_fence_s(self._workdir)
        """Half the gateway's site lease (from Welcome): how far ahead the fence's deadline is kept. A previous
        run's value is kept until the gateway says again, so that a restarted agent renews at once."""
        self.fence_renewals = 0

    def set_lease(self, lease_s: float) -> None:
        """The gateway's site lease (Welcome): every wrapper kills its attempt once the agent has not renewed the
        fence for half of it (0: no fence)."""
        self._fence_s = lease_s / 2
        self._renew_fence()

    def _renew_fence(self) -> None:
        if self._fence_s <= 0:
            return
        try:
            self._workdir.mkdir(parents=True, exist_ok=True)
            localproc.write_fence(self._workdir, self._fence_s)
            self.fence_renewals += 1
        except OSError as exc:  # the wrappers fence on the old deadline: the attempts stop, none runs twice
            log.warning("cannot renew the fence in %s: %s", self._workdir, exc)

    async def watch(self) -> None:
        """Keep the fence's deadline ahead while the agent runs, whether or not the gateway can be reached:
        attempts run on through a gateway outage; they stop only when this agent stops (or hangs)."""
        while True:
            self._renew_fence()
            await asyncio.sleep(max(0.05, min(1.0, self._fence_s / 8)) if self._fence_s > 0 else 0.5)

    @property
    def name(self) -> str:
        return "local"

    @property
    def job_user(self) -> str:
        """The user jobs run as ("" for the agent's own)."""
        return self._user.name if self._user is not None else ""

    def guard_secrets(self, key: Path, state_dir: Path | None) -> None:
        """Refuse to start (ConfigError) when jobs could read the site's key or touch the agent's state."""
        localguard.guard_secrets(self._user, key, state_dir)

    def pools(self, declared: Sequence[PoolSpec]) -> Sequence[PoolSpec]:
        # A plain machine cannot be asked what it has; the operator's declaration is the truth.
        return list(declared)

    async def launch(self, spec: LaunchSpec) -> LocalHandle:
        if not spec.command or not spec.command[0]:
            raise LaunchFailed(f"job {spec.job_id} has an empty command; give the run a command to execute")
        if not _SAFE_ID.fullmatch(spec.job_id):
            raise LaunchFailed(f"job id {spec.job_id!r} cannot be used as a folder name on this site")
        directory = self._workdir / spec.job_id / str(spec.epoch)
        env = self._environment(spec, directory)
        executable = _resolve_executable(spec.command[0], env.get("PATH", os.defpath), directory)
        wrapper_env = {**env, localproc.FENCE_ENV: str(self._workdir / localproc.FENCE_FILE)}  # the wrapper's only
        try:
            directory.mkdir(parents=True, exist_ok=True)
            localproc.clear_exit(directory)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            output = os.fdopen(localproc.open_in_attempt(directory / LOG_FILE, flags), "ab")
            if self._user is not None:  # the job (and its wrapper, which writes exit_code) own their folder only
                os.chown(directory, self._user.uid, self._user.gid)
                directory.chmod(0o700)
        except OSError as exc:
            raise LaunchFailed(f"cannot create the job folder {directory}: {exc.strerror}") from exc
        wrapper_env.pop(localproc.RUN_AS_ENV, None)  # never the job's to say
        if self._user is not None:
            wrapper_env[localproc.RUN_AS_ENV] = f"{self._user.uid}:{self._user.gid}"
        try:
            process = await asyncio.create_subprocess_exec(
                self._python,
                "-I",  # the job's PYTHONPATH and site packages are for the job, not for the wrapper
                "-c",
                localproc.WRAPPER,
                str(directory / localproc.EXIT_FILE),
                executable,
                *spec.command[1:],
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                cwd=directory,
                env=wrapper_env,
                # Own session = own process group, so cancel can stop everything the job started.
                start_new_session=True,
            )
        except OSError as exc:
            raise LaunchFailed(f"cannot start {spec.command[0]!r}: {exc.strerror or exc}") from exc
        finally:
            output.close()  # the child holds its own copy of the descriptor
        leader = localproc.identify(process.pid)
        with contextlib.suppress(OSError):  # only `sweep` reads it; the journal record is what adopt uses
            localproc.write_leader(directory, leader)
        log.debug("job %s epoch %d: started group %d in %s", spec.job_id, spec.epoch, process.pid, directory)
        return LocalHandle(spec.job_id, spec.epoch, leader, directory, process=process)

    def journal_record(self, handle: JobHandle) -> Mapping[str, object]:
        """What finds the attempt's process group again after the agent was killed: the wrapper's identity."""
        return _local(handle).leader.to_record()

    async def adopt(self, spec: LaunchSpec, recorded: Mapping[str, object] | None = None) -> LocalHandle | None:
        """After a restart: the attempt's group if its wrapper still runs (same pid, same start time), or an
        ended handle if the wrapper recorded how the command ended; None when neither (then whatever is left
        of its group is killed first, so that the devices the caller frees are really free). Within one agent
        run the runtime's attempt table makes launches idempotent, so this is only called for journaled ones."""
        directory = self._workdir / spec.job_id / str(spec.epoch)
        leader = ProcessIdentity.from_record(dict(recorded or {}))
        if leader is not None and localproc.running(leader):
            log.info("job %s epoch %d: adopted its running process group %d", spec.job_id, spec.epoch, leader.pid)
            return LocalHandle(spec.job_id, spec.epoch, leader, directory)
        if leader is not None and localproc.group_may_remain(leader):
            _end_leftovers(leader)
        ended = await asyncio.to_thread(localproc.read_exit, directory)
        if ended is None:
            return None
        log.info("job %s epoch %d: it ended while the agent was away (%s)", spec.job_id, spec.epoch, ended.describe())
        return LocalHandle(spec.job_id, spec.epoch, leader or ProcessIdentity(0, 0, ""), directory)

    async def sweep(self, kept: Collection[tuple[str, int]]) -> None:
        """Kill every attempt still running in the workdir that the journal does not hold (`kept`): the agent
        was killed after starting it and before journaling it, so nobody would watch it or count its devices;
        the gateway, never told it runs, sends its Launch again."""
        for directory, leader in await asyncio.to_thread(self._running_leaders):
            key = (directory.parent.name, int(directory.name))
            if key not in kept and localproc.running(leader):
                log.warning("job %s epoch %d: killing process group %d, started but never journaled", *key, leader.pid)
                _signal_group(leader.pid, signal.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(localproc.until_ended(leader), SWEEP_WAIT_S)

    def _running_leaders(self) -> list[tuple[Path, ProcessIdentity]]:
        found = []
        for path in self._workdir.glob(f"*/*/{localproc.LEADER_FILE}"):
            directory = path.parent
            if directory.name.isdigit() and not (directory / localproc.EXIT_FILE).exists():
                leader = localproc.read_leader(directory)
                if leader is not None and localproc.running(leader) and self._may_signal(leader):
                    found.append((directory, leader))
        return found

    def _may_signal(self, leader: ProcessIdentity) -> bool:
        """A leader.json lies in a folder the job's user may write: it must name a process of that user, or a
        job could have the agent kill any process group on the machine."""
        owner = localproc.owner_of(leader.pid)
        expected = self._user.uid if self._user is not None else os.geteuid()
        if owner != expected:
            log.warning("ignoring %d named by a leader file: it runs as uid %s, not the job user", leader.pid, owner)
            return False
        return True

    async def read_output(self, handle: JobHandle, offset: int, limit: int) -> bytes:
        path = _local(handle).directory / LOG_FILE
        return await asyncio.to_thread(read_output_file, path, offset, limit)

    async def wait(self, handle: JobHandle) -> ExitStatus:
        """The command's own outcome from the wrapper's exit file; the wrapper's when it left none (it was
        killed with its group). An adopted attempt whose wrapper left none was lost: `AttemptLost`."""
        local = _local(handle)
        returncode = await local.process.wait() if local.process is not None else None
        if local.process is None:
            await localproc.until_ended(local.leader)
        recorded = await asyncio.to_thread(localproc.read_exit, local.directory)
        if recorded is not None:
            return recorded
        if localproc.was_fenced(local.directory):
            raise AttemptLost(
                "its wrapper stopped it: the site agent had not renewed its fence within half the gateway's site "
                "lease (stopped or hung), so the gateway may already run a replacement"
            )
        if returncode is not None:
            return ExitStatus.from_returncode(returncode)
        if local.forced:
            return ExitStatus.from_returncode(-signal.SIGKILL)
        raise AttemptLost(
            f"its process group {local.group} ended while the site agent was away without recording how; "
            "it was most likely killed with its wrapper"
        )

    async def cancel(self, handle: JobHandle, grace_s: float) -> None:
        local = _local(handle)
        if local.process is None and not localproc.running(local.leader):
            return  # adopted and ended: nothing of it to stop, and its pid may be another process's by now
        # With start_new_session the group id is the leader's pid, and the kernel does not reuse a pid
        # while its group has members, so these signals reach only what the job started.
        _signal_group(local.group, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._leader_ended(local)), timeout=max(grace_s, 0.0))
        # Children may outlive the leader or ignore SIGTERM; the grace is over for all of them.
        local.forced = True
        _signal_group(local.group, signal.SIGKILL)
        await self._leader_ended(local)

    @staticmethod
    async def _leader_ended(local: LocalHandle) -> None:
        if local.process is not None:
            await local.process.wait()
        else:
            await localproc.until_ended(local.leader)

    def _environment(self, spec: LaunchSpec, directory: Path) -> dict[str, str]:
        # Only an allowlist of the agent's own environment: its secrets and settings never reach a job.
        env = localguard.job_environment(os.environ, self._options, self._user, directory)
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


def _end_leftovers(leader: ProcessIdentity) -> None:
    """The wrapper has ended: processes its command started may still hold the attempt's devices in its group.
    Kill them before the devices go to anyone else."""
    if localproc.group_has_members(leader.pid):
        log.warning("process group %d outlived its wrapper: killing what is left of it", leader.pid)
        _signal_group(leader.pid, signal.SIGKILL)


def _signal_group(group: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def _local(handle: JobHandle) -> LocalHandle:
    if not isinstance(handle, LocalHandle):
        raise BackendError(f"the local backend was given a foreign handle ({type(handle).__name__})")
    return handle
