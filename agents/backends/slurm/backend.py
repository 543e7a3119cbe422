"""The `slurm` backend: each attempt is one Slurm batch job on a partition of the centre's cluster.

Owns: discovering the partition's accelerators at start (`sinfo`, typed gres such as `gpu:h100:8` mapped to
catalogue classes), lowering the declared pools to what is there, submitting an attempt with `sbatch`,
adopting one submitted earlier (found by its job name), stopping one with `scancel`, and reading its output
file. Job states come from one poll loop for all attempts (`agents.backends.slurm.watch`). It does not check
epochs, runtimes or the centre's terms (the runtime does) and does not pick the cards: Slurm does.

Config (the agent YAML's `backend:` section):

    backend:
      type: slurm
      partition: gpu               # required: jobs go here, its usable nodes are the capacity
      account: proj-ai             # optional: sbatch --account
      slurm_conf: /etc/slurm/slurm.conf   # optional: exported as SLURM_CONF to every Slurm command
      workdir: /shared/fedgate     # attempt folders <workdir>/<job_id>/<epoch>/; must be visible to the nodes
      gres: {v100: nvidia-v100}    # optional: gres type -> catalogue class, on top of the built-in table
      poll_interval_s: 2           # optional: seconds between two polls of squeue/sacct
      command_timeout_s: 30        # optional: a Slurm command slower than this counts as failed

An attempt of job J, epoch E is the batch job `fedgate.J.E`, submitted with `--gres=<name>:<type>:<cards>`
on one node, `--time` one minute above the job's max runtime (a backstop: the runtime stops it first, with
its own message), `--no-requeue` (a retry is a new epoch, decided by the gateway), working directory and
output file `<workdir>/J/E/{job.sh,output.log}`. The job sees the FEDGATE_* variables the local backend sets
and the rendezvous variables (`fedgate.common.rendezvous`; one node: NNODES 1, rank 0, master its own node);
which physical cards it got is Slurm's to say (CUDA_VISIBLE_DEVICES, SLURM_JOB_GPUS).

A multi-node attempt (N nodes of C cards) is still ONE batch job: `--nodes=N --ntasks-per-node=1
--gres=<name>:<type>:C` (gres are per node), whose script runs `srun` with one task per node
(`<workdir>/J/E/task.sh`, with --kill-on-bad-exit: the first task to fail ends the others). Each task sees its
node's rendezvous variables (`agents.backends.slurm.nodes`: rank `first_rank + $SLURM_NODEID`, master the
allocation's first node) and, when its command ends, writes `<workdir>/J/E/nodes/node-<i>.exit`; `wait` names
the node whose record shows the first failure. So multi-node needs the workdir on a filesystem shared by the
nodes and the agent (as Slurm sites have for home and project folders); output from every node goes to the one
output.log. Cancel, preemption and adoption work on the one Slurm job, which covers every node; a cancel sends
TERM to every node's task but not to the batch script (whose srun would kill the tasks at once), so a cancelled
multi-node job may end in Slurm's records as FAILED with srun's code; the agent reports it as cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from agents.backends.base import BackendSettings, ExitStatus, JobHandle, LaunchSpec, read_output_file
from agents.backends.slurm.commands import SlurmCommands, SlurmTimeout
from agents.backends.slurm.config import SlurmOptions
from agents.backends.slurm.job import (
    LOG_FILE,
    SCRIPT_FILE,
    batch_script,
    job_name,
    node_task_script,
    sbatch_arguments,
    unusable_env_names,
)
from agents.backends.slurm.nodes import NODES_FOLDER, TASK_FILE, first_failure, read_node_exits
from agents.backends.slurm.parse import (
    SINFO_NODE_FORMAT,
    ClassCapacity,
    parse_sbatch_parsable,
    parse_sinfo_nodes,
    partition_capacity,
    unmapped_gres,
)
from agents.backends.slurm.watch import JobWatch
from agents.core.model import PoolSpec
from agents.errors import BackendError, LaunchFailed

log = logging.getLogger(__name__)

CANCELLED_WITHOUT_CODE = ExitStatus.from_returncode(-signal.SIGTERM)
"""How `exit_status` reads a job Slurm shows as CANCELLED 0:0."""
STOPPING_POLL_S = 0.5
"""While an attempt is being stopped, Slurm is polled at least this often, so a cancel returns soon after."""

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


@dataclass
class SlurmHandle:
    """One attempt submitted to Slurm."""

    job_id: str
    epoch: int
    slurm_id: str
    directory: Path
    """The attempt's folder: job.sh, output.log (and task.sh, nodes/ of a multi-node attempt)."""
    nodes: int = 1
    """Nodes of the attempt: its one Slurm job spans them all."""

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_FILE


class SlurmBackend:
    """Runs attempts as Slurm batch jobs. Call `discover()` once (on the event loop) before `pools()`."""

    keeps_jobs = True
    """Batch jobs run on without the agent; a restarted agent finds them by name (`adopt`)."""

    def __init__(self, settings: BackendSettings) -> None:
        if not isinstance(settings.options, SlurmOptions):
            raise BackendError("the slurm backend needs its options (partition, ...) from the backend section")
        self._options = settings.options
        self._workdir = settings.workdir
        self.commands = SlurmCommands(settings.options.slurm_conf, settings.options.command_timeout_s)
        """The Slurm command runner; its `calls` count each command run."""
        self._watch = JobWatch(self.commands, settings.options.poll_interval_s)
        self._capacity: dict[str, ClassCapacity] | None = None
        self._forced: set[str] = set()
        """Slurm ids of attempts that were sent KILL after their grace."""
        self._stopped: set[str] = set()
        """Slurm ids of attempts `cancel` was called on."""

    @property
    def name(self) -> str:
        return "slurm"

    @property
    def capacity(self) -> dict[str, ClassCapacity]:
        """What discovery found in the partition, by catalogue class."""
        if self._capacity is None:
            raise BackendError("the slurm backend has not looked at its cluster yet; await discover() first")
        return self._capacity

    async def discover(self) -> None:
        """Read the partition's usable nodes and their typed gres. Raises BackendError naming the fix."""
        conf = self.commands.slurm_conf
        if conf is not None and not conf.is_file():
            raise BackendError(f"backend.slurm_conf {conf} does not exist; point it at the cluster's slurm.conf")
        partition = self._options.partition
        result = await self.commands.run(
            "sinfo", "--noheader", "--Node", f"--partition={partition}", f"--format={SINFO_NODE_FORMAT}"
        )
        if not result.ok:
            raise BackendError(f"sinfo failed: {result.problem()}; check that slurmctld is reachable from here")
        nodes = parse_sinfo_nodes(result.stdout)
        if not nodes:
            listing = await self.commands.run("sinfo", "--noheader", "--format=%R")
            known = ", ".join(sorted(set(listing.stdout.split()))) if listing.ok else "unknown"
            raise BackendError(
                f"Slurm partition {partition!r} does not exist or has no nodes (partitions: {known}); "
                "fix backend.partition"
            )
        self._capacity = partition_capacity(nodes, self._options.gres_classes)
        for found in self._capacity.values():
            log.info(
                "partition %s: %d x %s (gres %s:%s, up to %d per node)",
                partition,
                found.cards,
                found.accelerator_class,
                found.gres_name,
                found.gres_type,
                found.max_per_node,
            )
        unknown = unmapped_gres(nodes, self._options.gres_classes)
        if unknown:
            log.warning(
                "partition %s: gres %s name no catalogue class; map them under backend.gres", partition, unknown
            )

    def pools(self, declared: Sequence[PoolSpec]) -> Sequence[PoolSpec]:
        pools = []
        for pool in declared:
            found = self.capacity.get(pool.accelerator_class)
            if found is None:
                log.warning(
                    "pool %s is not offered: partition %s has no usable node with it",
                    pool.accelerator_class,
                    self._options.partition,
                )
                continue
            cards = min(pool.cards, found.cards)
            pools.append(
                replace(
                    pool,
                    cards=cards,
                    offered=min(pool.offered, cards),
                    cards_per_node=min(pool.cards_per_node, found.max_per_node),
                )
            )
        return pools

    async def launch(self, spec: LaunchSpec) -> SlurmHandle:
        if not spec.command or not spec.command[0]:
            raise LaunchFailed(f"job {spec.job_id} has an empty command; give the run a command to execute")
        gres = self._gres(spec)
        if not _SAFE_ID.fullmatch(spec.job_id):
            raise LaunchFailed(f"job id {spec.job_id!r} cannot be used as a folder name on this site")
        bad = unusable_env_names(spec.env)
        if bad:
            raise LaunchFailed(f"environment variable names {bad} are not valid; use letters, digits and '_'")
        directory = self._workdir / spec.job_id / str(spec.epoch)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / SCRIPT_FILE).write_text(batch_script(spec, directory))
            if len(spec.nodes) > 1:
                (directory / TASK_FILE).write_text(node_task_script(spec, directory))
                (directory / NODES_FOLDER).mkdir(exist_ok=True)
        except OSError as exc:
            raise LaunchFailed(f"cannot create the job folder {directory}: {exc.strerror}") from exc
        try:
            result = await self.commands.run(*sbatch_arguments(spec, self._options, gres, directory))
        except SlurmTimeout:
            # The reply may be what got lost, not the job: never submit twice.
            adopted = await self.adopt(spec)
            if adopted is not None:
                return adopted
            raise LaunchFailed("Slurm did not answer the submission in time; the site will accept a retry") from None
        if not result.ok:
            raise LaunchFailed(f"Slurm refused the job: {result.problem()}")
        try:
            slurm_id = parse_sbatch_parsable(result.stdout)
        except ValueError as exc:
            raise LaunchFailed(f"Slurm's answer to the submission was unreadable: {exc}") from None
        log.debug("job %s epoch %d: Slurm job %s in %s", spec.job_id, spec.epoch, slurm_id, directory)
        return self._follow(spec, slurm_id, directory)

    async def adopt(self, spec: LaunchSpec, recorded: Mapping[str, object] | None = None) -> SlurmHandle | None:
        name = job_name(spec.job_id, spec.epoch)
        found = await self._watch.jobs_named(name, self._options.partition)
        if not found:
            return None
        live = [row for row in found if not row.ended]
        chosen = max(live or found, key=lambda row: int(row.slurm_id))
        log.info("job %s epoch %d: adopted Slurm job %s (%s)", spec.job_id, spec.epoch, chosen.slurm_id, chosen.state)
        return self._follow(spec, chosen.slurm_id, self._workdir / spec.job_id / str(spec.epoch))

    async def read_output(self, handle: JobHandle, offset: int, limit: int) -> bytes:
        return await asyncio.to_thread(read_output_file, _slurm(handle).log_path, offset, limit)

    async def wait(self, handle: JobHandle) -> ExitStatus:
        slurm = _slurm(handle)
        status = await asyncio.shield(self._watch.follow(slurm.slurm_id))
        if slurm.slurm_id in self._forced and status == CANCELLED_WITHOUT_CODE:
            # Slurm records a cancelled job as 0:0 however it died; this one outlived its grace and got KILL.
            return ExitStatus.from_returncode(-signal.SIGKILL)
        if slurm.nodes > 1 and slurm.slurm_id in self._stopped and not status.succeeded:
            # The tasks were signalled, not the batch script: it ended with srun's code for the stopped tasks.
            forced = slurm.slurm_id in self._forced
            return ExitStatus.from_returncode(-(signal.SIGKILL if forced else signal.SIGTERM))
        if slurm.nodes > 1 and not status.succeeded and not status.signal_number:
            # srun ended with the highest code of any task (143 for those it stopped): the failing node's own
            # record says which node failed first and how. A signal (preemption, time limit) is the
            # allocation's, not a node's.
            failed = first_failure(await asyncio.to_thread(read_node_exits, slurm.directory / NODES_FOLDER))
            if failed is not None:
                return ExitStatus(exit_code=failed.exit_code, node=failed.describe())
        return status

    async def cancel(self, handle: JobHandle, grace_s: float) -> None:
        slurm = _slurm(handle)
        slurm_id = slurm.slurm_id
        ended = self._watch.follow(slurm_id)
        if ended.done():
            return
        self._stopped.add(slurm_id)
        # A pending job cannot be signalled (scancel retries for a long while), so each request names the
        # state it is meant for: signal what runs, remove what waits. Several nodes: TERM goes to every node's
        # task and not to the batch script, whose srun would answer it by killing the tasks at once.
        term = ["--signal=TERM"] if slurm.nodes > 1 else ["--full", "--signal=TERM"]
        await self._scancel(slurm_id, *term, "--state=RUNNING")
        await self._scancel(slurm_id, "--state=PENDING")
        await self._until_ended(ended, grace_s)
        if not ended.done():
            self._forced.add(slurm_id)
            await self._scancel(slurm_id, "--full", "--signal=KILL", "--state=RUNNING")
            await self._scancel(slurm_id)  # and release the allocation, whatever state it is in
        await self._until_ended(ended, None)

    async def watch(self) -> None:
        """The backend's own loop, for the agent to own (the optional `watch` hook): polls every followed job
        for as long as the agent runs. A failing poll is logged and the next one runs; it never returns."""
        await self._watch.run()

    async def close(self) -> None:
        """Stop polling (the jobs keep running in Slurm)."""
        await self._watch.close()

    # -- internals ---------------------------------------------------------------------------------

    def _gres(self, spec: LaunchSpec) -> str:
        """The --gres value for each node's cards ('' for none), or LaunchFailed if no node could run it."""
        shapes = {len(devices) for devices in spec.nodes}
        if len(shapes) > 1:
            raise LaunchFailed(
                f"the job's nodes have different numbers of cards ({sorted(shapes)}); Slurm gives every node of a "
                "job the same cards: ask for whole nodes of one size"
            )
        cards = shapes.pop()
        if cards == 0:
            return ""
        partition = self._options.partition
        found = self.capacity.get(spec.accelerator_class)
        if found is None:
            have = ", ".join(sorted(self.capacity)) or "no accelerators"
            raise LaunchFailed(
                f"Slurm partition {partition} has no {spec.accelerator_class or '(no class)'} cards (it has {have}); "
                "ask for a class this site offers"
            )
        if cards > found.max_per_node:
            raise LaunchFailed(
                f"the job asks for {cards} {spec.accelerator_class} cards on one node, but the largest node of "
                f"Slurm partition {partition} has {found.max_per_node}; ask for at most {found.max_per_node}"
            )
        return found.gres_request(cards)

    async def _until_ended(self, ended: asyncio.Future[ExitStatus], timeout_s: float | None) -> None:
        """Wait for a stopping job's end (at most `timeout_s`), polling faster than the usual tick."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + max(timeout_s, 0.0)
        step = min(STOPPING_POLL_S, self._options.poll_interval_s)
        while not ended.done():
            self._watch.poke()
            remaining = step if deadline is None else min(step, deadline - loop.time())
            if remaining <= 0:
                return
            await asyncio.wait({ended}, timeout=remaining)

    def _follow(self, spec: LaunchSpec, slurm_id: str, directory: Path) -> SlurmHandle:
        self._watch.follow(slurm_id)
        return SlurmHandle(
            job_id=spec.job_id, epoch=spec.epoch, slurm_id=slurm_id, directory=directory, nodes=len(spec.nodes)
        )

    async def _scancel(self, slurm_id: str, *flags: str) -> bool:
        # scancel fails harmlessly on a job that has just ended; the poll loop tells how it ended.
        result = await self.commands.run("scancel", *flags, slurm_id)
        if not result.ok:
            log.debug("scancel %s %s: %s", " ".join(flags), slurm_id, result.problem())
        return result.ok


def _slurm(handle: JobHandle) -> SlurmHandle:
    if not isinstance(handle, SlurmHandle):
        raise BackendError(f"the slurm backend was given a foreign handle ({type(handle).__name__})")
    return handle
