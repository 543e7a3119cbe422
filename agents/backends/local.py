"""The `local` backend: runs each attempt as a subprocess of the agent, on the agent's own machine.

Owns: the attempt's working directory `<workdir>/<job_id>/<epoch>/` with its `output.log` (stdout and
stderr) and `exit_code` (owned by the job user), the process environment (the allowlisted part of the agent's,
HOME the attempt folder, the job's, then FEDGATE_*, the stack's visible-devices variable and the rendezvous
variables (`fedgate.common.rendezvous`; master 127.0.0.1 and a free port unless the gateway named them), which
the job cannot override: `agents.backends.localguard`), running the command without a shell under a small
wrapper (`agents.backends.localproc`) in its own process group, as the job user (`nobody` by default when the
agent is root: `localguard.job_user`), stopping that whole group, and finding an attempt again after the agent
was killed: the journal keeps the group's identity (`journal_record`), and `adopt` follows it if it still runs,
reports how it ended if its wrapper recorded that, and otherwise ends whatever is left of its group and reports
it gone, so its devices are never handed out while it lives. A multi-node attempt is one such group per node,
each confined to its node's devices, in its own folder (`agents.backends.localnodes`, which also owns the rule
that the first node to fail ends the others). It does not check capacity, epochs or runtimes: the runtime does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import shutil
import signal
import socket
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agents.backends import localguard, localnodes, localproc
from agents.backends.base import BackendSettings, ExitStatus, JobHandle, LaunchSpec, read_output_file
from agents.backends.localnodes import NodeGroup
from agents.backends.localproc import ProcessIdentity
from agents.backends.stacks import visible_devices_env
from agents.core.model import PoolSpec
from agents.errors import BackendError, ConfigError, LaunchFailed

log = logging.getLogger(__name__)

LOG_FILE = "output.log"
SWEEP_WAIT_S = 5.0
"""How long `sweep` waits for a group it killed to be gone (SIGKILL cannot be ignored: only a hung kernel call
makes it wait that long)."""
RENDEZVOUS_HOST = "127.0.0.1"
"""Rank 0's host when the gateway named none: every node of a local attempt runs on this machine."""
GRACE_ENV = "FEDGATE_PREEMPT_GRACE_S"
"""The grace the job was told it has after SIGTERM (`agents.core.launchspec` sets it): also what the other nodes
of a multi-node attempt get when one node failed."""
DEFAULT_GRACE_S = 5.0

# A job id becomes a folder name: refuse anything that could climb out of the workdir.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


@dataclass
class LocalHandle:
    """One attempt started by the local backend (by this agent run, or adopted from an earlier one)."""

    job_id: str
    epoch: int
    directory: Path
    """The attempt's working directory; `output.log` is inside (and, of a one-node attempt, `exit_code`)."""
    nodes: tuple[NodeGroup, ...]
    """Every node's process group, in rank order (one for a one-node attempt)."""
    grace_s: float = DEFAULT_GRACE_S
    """How long the other nodes get after SIGTERM when one node failed."""

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_FILE

    @property
    def leader(self) -> ProcessIdentity:
        """The first node's wrapper."""
        return self.nodes[0].leader

    @property
    def group(self) -> int:
        return self.nodes[0].group

    @property
    def process(self) -> asyncio.subprocess.Process | None:
        return self.nodes[0].process


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
        folders = localnodes.node_folders(directory, _ranks(spec))
        port = spec.rendezvous.master_port or _free_port(RENDEZVOUS_HOST)
        envs = [self._environment(spec, node, folder, port) for node, (_, folder) in enumerate(folders)]
        executable = _resolve_executable(spec.command[0], envs[0].get("PATH", os.defpath), folders[0][1])
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for _, folder in folders:
                folder.mkdir(exist_ok=True)
                if folder.is_symlink():  # a node folder lies in the job user's folder: never follow a link there
                    raise OSError(0, f"{folder.name} is a link")
                localproc.clear_exit(folder)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            output = os.fdopen(localproc.open_in_attempt(directory / LOG_FILE, flags), "ab")
            if self._user is not None:  # the job (and its wrappers, which write exit_code) own their folders only
                for folder in {directory, *(folder for _, folder in folders)}:
                    os.chown(folder, self._user.uid, self._user.gid, follow_symlinks=False)
                    folder.chmod(0o700)
        except OSError as exc:
            raise LaunchFailed(f"cannot create the job folder {directory}: {exc.strerror}") from exc
        nodes: list[NodeGroup] = []
        try:
            for (rank, folder), env in zip(folders, envs, strict=True):
                argv = (executable, *spec.command[1:])
                nodes.append(await localnodes.start(rank, self._python, folder, argv, output.fileno(), env))
        except OSError as exc:
            await localnodes.stop_all(nodes, 0.0)  # one attempt: a node that cannot start ends those that did
            raise LaunchFailed(f"cannot start {spec.command[0]!r}: {exc.strerror or exc}") from exc
        finally:
            output.close()  # each child holds its own copy of the descriptor
        groups = ", ".join(str(node.group) for node in nodes)
        log.debug("job %s epoch %d: started group(s) %s in %s", spec.job_id, spec.epoch, groups, directory)
        return LocalHandle(spec.job_id, spec.epoch, directory, tuple(nodes), _grace_s(spec))

    def journal_record(self, handle: JobHandle) -> Mapping[str, object]:
        """What finds the attempt's process groups again after the agent was killed: the wrappers' identities."""
        return localnodes.to_record(_local(handle).nodes)

    async def adopt(self, spec: LaunchSpec, recorded: Mapping[str, object] | None = None) -> LocalHandle | None:
        """After a restart: each node's group if its wrapper still runs (same pid, same start time), or an
        ended node if the wrapper recorded how the command ended; None when no node left either (then whatever
        is left of each group is killed first, so that the devices the caller frees are really free). A node
        with neither beside others makes the attempt lost, once `wait` stopped the others. Within one agent run
        the runtime's attempt table makes launches idempotent, so this is only called for journaled ones."""
        directory = self._workdir / spec.job_id / str(spec.epoch)
        folders = localnodes.node_folders(directory, _ranks(spec))
        leaders = localnodes.leaders_from_record(recorded, _ranks(spec))
        found = [await localnodes.adopt(rank, folder, leaders.get(rank)) for rank, folder in folders]
        if all(node is None for node in found):
            return None
        nodes = tuple(
            node or localnodes.lost(rank, folder, leaders.get(rank))
            for node, (rank, folder) in zip(found, folders, strict=True)
        )
        running = [node.group for node in nodes if localproc.running(node.leader)]
        log.info("job %s epoch %d: adopted; running group(s): %s", spec.job_id, spec.epoch, running or "none")
        return LocalHandle(spec.job_id, spec.epoch, directory, nodes, _grace_s(spec))

    async def sweep(self, kept: Collection[tuple[str, int]]) -> None:
        """Kill every attempt still running in the workdir that the journal does not hold (`kept`): the agent
        was killed after starting it and before journaling it, so nobody would watch it or count its devices;
        the gateway, never told it runs, sends its Launch again. Every node's group of such an attempt dies."""
        for key, leader in await asyncio.to_thread(self._running_leaders):
            if key not in kept and localproc.running(leader):
                log.warning("job %s epoch %d: killing process group %d, started but never journaled", *key, leader.pid)
                localnodes.signal_group(leader.pid, signal.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(localproc.until_ended(leader), SWEEP_WAIT_S)

    def _running_leaders(self) -> list[tuple[tuple[str, int], ProcessIdentity]]:
        found = []
        node_folder = localnodes.NODE_FOLDER.format(rank="*")
        leader_files = f"*/*/{localproc.LEADER_FILE}", f"*/*/{node_folder}/{localproc.LEADER_FILE}"
        for path in (path for pattern in leader_files for path in self._workdir.glob(pattern)):
            directory = path.parent
            attempt = directory if directory.name.isdigit() else directory.parent
            if attempt.name.isdigit() and not (directory / localproc.EXIT_FILE).exists():
                leader = localproc.read_leader(directory)
                if leader is not None and localproc.running(leader) and self._may_signal(leader):
                    found.append(((attempt.parent.name, int(attempt.name)), leader))
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
        killed with its group). An adopted attempt whose wrapper left none was lost: `AttemptLost`. Of a
        multi-node attempt: the first node to fail, once the others were stopped (`localnodes.outcome`)."""
        local = _local(handle)
        return await localnodes.outcome(local.nodes, local.grace_s)

    async def cancel(self, handle: JobHandle, grace_s: float) -> None:
        await localnodes.stop_all(_local(handle).nodes, grace_s)

    def _environment(self, spec: LaunchSpec, node: int, folder: Path, port: int) -> dict[str, str]:
        # Only an allowlist of the agent's own environment: its secrets and settings never reach a job.
        env = localguard.job_environment(os.environ, self._options, self._user, folder)
        env.update(spec.job_environment())
        devices = spec.nodes[node]
        env["FEDGATE_DEVICES"] = ",".join(str(d) for d in devices)
        env.update(visible_devices_env(spec.stack, devices))
        env.update(spec.node_environment(node, RENDEZVOUS_HOST, port))
        env.pop(localproc.RUN_AS_ENV, None)  # never the job's to say
        env[localproc.FENCE_ENV] = str(self._workdir / localproc.FENCE_FILE)  # the wrapper's alone: it pops it
        if self._user is not None:
            env[localproc.RUN_AS_ENV] = f"{self._user.uid}:{self._user.gid}"
        return env


def _ranks(spec: LaunchSpec) -> list[int]:
    """The node ranks of this part, in node order."""
    return [spec.rendezvous.first_rank + node for node in range(len(spec.nodes))]


def _free_port(host: str) -> int:
    """A port no one listens on now (the kernel's pick for port 0): rank 0's master binds it a moment later."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _grace_s(spec: LaunchSpec) -> float:
    try:
        grace = float(spec.env.get(GRACE_ENV, DEFAULT_GRACE_S))
    except ValueError:
        return DEFAULT_GRACE_S
    return grace if math.isfinite(grace) and grace >= 0 else DEFAULT_GRACE_S


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


def _local(handle: JobHandle) -> LocalHandle:
    if not isinstance(handle, LocalHandle):
        raise BackendError(f"the local backend was given a foreign handle ({type(handle).__name__})")
    return handle
