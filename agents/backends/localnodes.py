"""The nodes of one `local` attempt: one wrapper's process group per node, and the rule that makes them one attempt.

Owns: `NodeGroup` (one node's wrapper, `agents.backends.localproc`'s, leader of its own process group: starting
it, finding it again from its journaled identity, how its command ended, stopping its group), where each node's
files are (a one-node attempt keeps its attempt folder; node r of a multi-node attempt has `node-<r>/` inside it,
with its own `exit_code`, `leader.json` and `fenced`, as its working folder and HOME, while every node writes the
attempt's one `output.log`), the journal record of every node's leader, and the multi-node contract of the
Backend protocol: `outcome` returns once, with the first node to end non-zero (or killed, or lost) named in
`ExitStatus.node` after every other node was stopped (SIGTERM, the grace, SIGKILL), and success only when every
node exited 0; `stop_all` reaches every group. It does not build environments, choose ports or folders' owners:
`agents.backends.local` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agents.backends import localproc
from agents.backends.base import ExitStatus
from agents.backends.localproc import ProcessIdentity
from agents.errors import AttemptLost

log = logging.getLogger(__name__)

NODE_FOLDER = "node-{rank}"
"""Node r's folder inside a multi-node attempt's folder (r: its node rank in the attempt's world)."""
NODES_KEY = "nodes"
"""The journal record of a multi-node attempt: {"nodes": [{"rank": r, "pid": .., "start_ticks": .., ..}, ..]};
a one-node attempt's record is its leader's identity alone, as before nodes existed."""
_NOBODY = ProcessIdentity(0, 0, "")


@dataclass
class NodeGroup:
    """One node of an attempt: its wrapper, leader of the node's process group (the group id is its pid)."""

    rank: int
    """Its node rank in the attempt's world."""
    leader: ProcessIdentity
    directory: Path
    """Where its wrapper writes `exit_code` (and `fenced`): the attempt's folder for a one-node attempt."""
    process: asyncio.subprocess.Process | None = None
    """The wrapper as this agent's child; None when adopted after a restart (it is nobody's child of ours)."""
    forced: bool = False
    """Set once `stop` sent SIGKILL to the group, which may leave no exit file behind."""

    @property
    def group(self) -> int:
        return self.leader.pid

    @property
    def name(self) -> str:
        return f"node {self.rank}"

    async def ended(self) -> None:
        """Return once the wrapper has ended."""
        if self.process is not None:
            await self.process.wait()
        else:
            await localproc.until_ended(self.leader)

    async def outcome(self) -> ExitStatus:
        """The command's own outcome from the wrapper's exit file; the wrapper's when it left none (it was killed
        with its group). An adopted node whose wrapper left none was lost: `AttemptLost`."""
        returncode = await self.process.wait() if self.process is not None else None
        if self.process is None:
            await localproc.until_ended(self.leader)
        recorded = await asyncio.to_thread(localproc.read_exit, self.directory)
        if recorded is not None:
            return recorded
        if localproc.was_fenced(self.directory):
            raise AttemptLost(
                "its wrapper stopped it: the site agent had not renewed its fence within half the gateway's site "
                "lease (stopped or hung), so the gateway may already run a replacement"
            )
        if returncode is not None:
            return ExitStatus.from_returncode(returncode)
        if self.forced:
            return ExitStatus.from_returncode(-signal.SIGKILL)
        raise AttemptLost(
            f"its process group {self.group} ended while the site agent was away without recording how; "
            "it was most likely killed with its wrapper"
        )

    async def stop(self, grace_s: float) -> None:
        """SIGTERM to the whole group, SIGKILL after `grace_s`; returns once the wrapper is gone."""
        if self.process is None and not localproc.running(self.leader):
            return  # adopted and ended: nothing of it to stop, and its pid may be another process's by now
        # With start_new_session the group id is the leader's pid, and the kernel does not reuse a pid
        # while its group has members, so these signals reach only what the job started.
        signal_group(self.group, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.ended()), timeout=max(grace_s, 0.0))
        # Children may outlive the leader or ignore SIGTERM; the grace is over for all of them.
        self.forced = True
        signal_group(self.group, signal.SIGKILL)
        await self.ended()


def node_folders(attempt: Path, ranks: Sequence[int]) -> list[tuple[int, Path]]:
    """(rank, folder) of each node: the attempt's own folder for one node, `node-<r>/` inside it for several."""
    if len(ranks) == 1:
        return [(ranks[0], attempt)]
    return [(rank, attempt / NODE_FOLDER.format(rank=rank)) for rank in ranks]


async def start(
    rank: int, python: str, folder: Path, argv: Sequence[str], output: int, env: Mapping[str, str]
) -> NodeGroup:
    """Start node `rank`'s wrapper in its own session (own process group) running `argv` in `folder`, its stdout and
    stderr on the descriptor `output`. OSError when it cannot be started."""
    process = await asyncio.create_subprocess_exec(
        python,
        "-I",  # the job's PYTHONPATH and site packages are for the job, not for the wrapper
        "-c",
        localproc.WRAPPER,
        str(folder / localproc.EXIT_FILE),
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=output,
        stderr=asyncio.subprocess.STDOUT,
        cwd=folder,
        env=dict(env),
        # Own session = own process group, so cancel can stop everything the node started.
        start_new_session=True,
    )
    leader = localproc.identify(process.pid)
    with contextlib.suppress(OSError):  # only `sweep` reads it; the journal record is what adopt uses
        localproc.write_leader(folder, leader)
    return NodeGroup(rank, leader, folder, process=process)


def to_record(nodes: Sequence[NodeGroup]) -> dict[str, object]:
    """The journal record of the attempt's leaders (one node: its leader's identity, the record of old)."""
    if len(nodes) == 1:
        return nodes[0].leader.to_record()
    return {NODES_KEY: [{"rank": node.rank, **node.leader.to_record()} for node in nodes]}


def leaders_from_record(recorded: Mapping[str, object] | None, ranks: Sequence[int]) -> dict[int, ProcessIdentity]:
    """Each node's leader by rank, from a journal record (empty for a journal from before records)."""
    record = dict(recorded or {})
    if len(ranks) == 1:
        leader = ProcessIdentity.from_record(record)
        return {ranks[0]: leader} if leader is not None else {}
    found: dict[int, ProcessIdentity] = {}
    entries = record.get(NODES_KEY)
    for entry in entries if isinstance(entries, list) else []:
        leader = ProcessIdentity.from_record(entry)
        rank = entry.get("rank") if isinstance(entry, dict) else None
        if leader is not None and isinstance(rank, int) and rank in ranks:
            found[rank] = leader
    return found


async def adopt(rank: int, folder: Path, leader: ProcessIdentity | None) -> NodeGroup | None:
    """Node `rank` after a restart: its group when its wrapper still runs, an ended node when the wrapper left an
    exit file, None when neither (whatever is left of its group is killed first)."""
    if leader is not None and localproc.running(leader):
        return NodeGroup(rank, leader, folder)
    if leader is not None and localproc.group_may_remain(leader):
        end_leftovers(leader)
    if await asyncio.to_thread(localproc.read_exit, folder) is None:
        return None
    return NodeGroup(rank, leader or _NOBODY, folder)


def lost(rank: int, folder: Path, leader: ProcessIdentity | None) -> NodeGroup:
    """A node of an adopted attempt that left no trace: its `outcome` says it was lost."""
    return NodeGroup(rank, leader or _NOBODY, folder)


async def outcome(nodes: Sequence[NodeGroup], grace_s: float) -> ExitStatus:
    """How the attempt ended: the one node's outcome; of several, the first to end non-zero (or killed, or lost),
    named, once every other node was stopped; success only when every node exited 0."""
    if len(nodes) == 1:
        return await nodes[0].outcome()
    waits = {asyncio.ensure_future(node.outcome()): node for node in nodes}
    try:
        pending = set(waits)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            failed = [task for task in done if task.exception() is not None or not task.result().succeeded]
            if failed:
                first = min(failed, key=lambda task: (_ended_ns(waits[task]), waits[task].rank))
                node = waits[first]
                if pending:
                    log.info("%s ended the attempt: stopping its other %d node(s)", node.name, len(pending))
                    await stop_all([waits[task] for task in pending], grace_s)
                    await asyncio.wait(pending)
                return _named(first, node)
        return ExitStatus(exit_code=0)
    finally:
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)  # no failure of a node left unretrieved


def _named(task: asyncio.Future[ExitStatus], node: NodeGroup) -> ExitStatus:
    error = task.exception()
    if isinstance(error, AttemptLost):
        raise AttemptLost(f"{node.name}: {error.message}") from error
    if error is not None:
        raise error
    return dataclasses.replace(task.result(), node=node.name)


def _ended_ns(node: NodeGroup) -> int:
    """When the node's exit file was written (nodes that ended while the agent was away come in together); one
    without a file sorts after those with one."""
    try:
        return os.stat(node.directory / localproc.EXIT_FILE, follow_symlinks=False).st_mtime_ns
    except OSError:
        return 1 << 62


async def stop_all(nodes: Sequence[NodeGroup], grace_s: float) -> None:
    """Stop every node's group at once (SIGTERM, the grace, SIGKILL); returns once every wrapper is gone."""
    await asyncio.gather(*(node.stop(grace_s) for node in nodes))


def end_leftovers(leader: ProcessIdentity) -> None:
    """The wrapper has ended: processes its command started may still hold the node's devices in its group.
    Kill them before the devices go to anyone else."""
    if localproc.group_has_members(leader.pid):
        log.warning("process group %d outlived its wrapper: killing what is left of it", leader.pid)
        signal_group(leader.pid, signal.SIGKILL)


def signal_group(group: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)
