"""The nodes of a Slurm attempt: the rendezvous variables each node's processes see, the task script `srun` runs
on every node of a multi-node attempt, and the exit records those tasks leave behind.

Owns: the shell lines that find rank 0's master inside the allocation (the NodeAddr of the allocation's first
node, a port derived from the Slurm job id), the `export` lines of the rendezvous variables
(`fedgate.common.rendezvous`) with the node rank evaluated per task (`first_rank + $SLURM_NODEID`), the srun
command line of a multi-node attempt, the task script, and reading the nodes' exit records. Pure but for
`read_node_exits` (a blocking read of one folder, which the backend runs in a thread): it builds and parses text.

Where the values come from, unless the gateway named the master (then its address and port win, quoted as data):
- MASTER_ADDR: the NodeAddr of the first host of `scontrol show hostnames "$SLURM_JOB_NODELIST"` (the node the
  batch script runs on), which is what slurmctld itself reaches the node by; its name when scontrol says nothing.
- MASTER_PORT: `MASTER_PORTS[0] + $SLURM_JOB_ID % <size of MASTER_PORTS>` (29500-29999, torch's default port
  upwards), so two attempts on one node share a port only when their job ids are 500 apart.
- NODE_RANK: `first_rank + $SLURM_NODEID`, per task; NNODES, WORLD_SIZE, NPROC_PER_NODE: literals.
The job's own environment is data: its values are single-quoted, and it is exported after the master is found,
so it cannot steer that search (a job that sets SLURM_JOB_NODELIST changes nothing).
"""

from __future__ import annotations

import os
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path

from agents.backends.base import LaunchSpec
from fedgate.common import rendezvous

TASK_FILE = "task.sh"
"""The script srun runs once per node of a multi-node attempt, in the attempt's folder."""
NODES_FOLDER = "nodes"
"""Sub-folder of the attempt's folder where each node's task leaves `node-<SLURM_NODEID>.exit`."""
MASTER_PORTS = rendezvous.DEFAULT_PORTS
"""The range MASTER_PORT is taken from when the gateway named none (inclusive)."""

_ADDR = "\0master-addr"
_PORT = "\0master-port"
# Unexported shell variables of the batch script: the job never sees them.
_ADDR_WORD = '"$fedgate_master_addr"'
_PORT_WORD = '"$fedgate_master_port"'


def master_lines(spec: LaunchSpec) -> list[str]:
    """Lines of the batch script (it runs on the allocation's first node) that set `fedgate_master_addr` and
    `fedgate_master_port` (none for what the gateway named) and, for several nodes, `fedgate_srun`."""
    values = spec.rendezvous_values(0, _ADDR, _PORT)
    # srun found before the job's environment is exported: a job's own PATH must not lose or replace it.
    lines = ["fedgate_srun=$(command -v srun || echo srun)"] if len(spec.nodes) > 1 else []
    if values[rendezvous.MASTER_ADDR] == _ADDR:
        lines += [
            "fedgate_first_node= fedgate_master_addr=",
            'if [ -n "${SLURM_JOB_NODELIST:-}" ]; then',
            '  fedgate_first_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" 2>/dev/null | head -n 1)',
            "fi",
            'if [ -n "$fedgate_first_node" ]; then',
            '  fedgate_master_addr=$(scontrol --oneliner show node "$fedgate_first_node" 2>/dev/null'
            " | tr ' ' '\\n' | sed -n 's/^NodeAddr=//p' | head -n 1)",
            "fi",
            "fedgate_master_addr=${fedgate_master_addr:-${fedgate_first_node:-$(hostname)}}",
        ]
    if values[rendezvous.MASTER_PORT] == _PORT:
        first, last = MASTER_PORTS
        lines.append(f"fedgate_master_port=$(({first} + ${{SLURM_JOB_ID:-0}} % {last - first + 1}))")
    return lines


def rendezvous_exports(spec: LaunchSpec) -> list[str]:
    """`export` lines of every rendezvous variable, as node rank `first_rank` (the first node's, and the only
    node's of a one-node attempt); a multi-node task sets its own rank (`node_rank_exports`)."""
    words = {}
    for key, value in spec.rendezvous_values(0, _ADDR, _PORT).items():
        words[key] = _ADDR_WORD if value == _ADDR else _PORT_WORD if value == _PORT else shlex.quote(value)
    return [f"export {name}={word}" for name, word in rendezvous.environment(spec.stack, words).items()]


def node_rank_exports(spec: LaunchSpec) -> list[str]:
    """`export` lines of the node rank's variables, evaluated in each task: `first_rank + $SLURM_NODEID`."""
    word = f"$(({int(spec.rendezvous.first_rank)} + SLURM_NODEID))"
    names = rendezvous.environment(spec.stack, {rendezvous.NODE_RANK: word})
    return [f"export {name}={value}" for name, value in names.items()]


def srun_command(spec: LaunchSpec, directory: Path) -> str:
    """The batch script's last line for a multi-node attempt: one task per node, and the first task to exit
    non-zero ends the others (--kill-on-bad-exit). --wait=0 overrides a site's WaitTime, which would end the
    other nodes some seconds after any one node's task ended, even a successful one that finished first."""
    nodes = len(spec.nodes)
    return (
        f'exec "$fedgate_srun" --nodes={nodes} --ntasks={nodes} --ntasks-per-node=1 --kill-on-bad-exit=1 --wait=0 '
        f"/bin/sh {shlex.quote(str(directory / TASK_FILE))}"
    )


def task_script(spec: LaunchSpec, directory: Path, run_lines: list[str]) -> str:
    """The script each node's task runs: its node rank, then `run_lines` (which set `code` to the command's exit
    code), then its exit record `<code> <node rank> <node name>` in NODES_FOLDER. A task killed by a signal (the
    others, once one failed; a cancel) writes none: the first failure is the one that wrote a record first."""
    record = f"{shlex.quote(str(directory / NODES_FOLDER))}/node-$((SLURM_NODEID)).exit"
    lines = [
        "#!/bin/sh",
        f"# fedgate job {spec.job_id}, epoch {spec.epoch}: the task srun runs on each node; written by the site agent",
        *node_rank_exports(spec),
        *run_lines,
        f'printf \'%s %s %s\\n\' "$code" "$FEDGATE_NODE_RANK" "$SLURMD_NODENAME" > {record}',
        'exit "$code"',
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class NodeExit:
    """What one node's task recorded when its command ended."""

    node_rank: int
    node_name: str
    exit_code: int
    written_ns: int
    """When the record was written (the file's mtime, ns): the earliest failing record is the first failure."""

    def describe(self) -> str:
        """The node as `ExitStatus.node` names it: `node 1 (cn02)`."""
        return f"node {self.node_rank} ({self.node_name})" if self.node_name else f"node {self.node_rank}"


def parse_node_exit(text: str, written_ns: int) -> NodeExit | None:
    """One record `<code> <node rank> <node name>`; None when it is not one (cut short, or not ours)."""
    parts = text.split()
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[:2]):
        return None
    name = parts[2] if len(parts) == 3 else ""
    name = "".join(c for c in name if c.isalnum() or c in "._-")[:64]
    return NodeExit(node_rank=int(parts[1]), node_name=name, exit_code=int(parts[0]), written_ns=written_ns)


def first_failure(records: list[NodeExit]) -> NodeExit | None:
    """The record of the first node whose command failed; None when every recorded node succeeded."""
    failed = [r for r in records if r.exit_code != 0]
    return min(failed, key=lambda r: (r.written_ns, r.node_rank)) if failed else None


def read_node_exits(folder: Path) -> list[NodeExit]:
    """Every readable exit record in a multi-node attempt's `nodes` folder. Blocking: run it in a thread. The
    folder may belong to the job's user: links and anything but small plain files are skipped."""
    records = []
    try:
        names = sorted(entry.name for entry in os.scandir(folder) if entry.name.endswith(".exit"))
    except OSError:
        return []
    for name in names:
        try:
            fd = os.open(folder / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            continue
        with os.fdopen(fd, "rb") as record:
            parsed = parse_node_exit(record.read(256).decode(errors="replace"), info.st_mtime_ns)
        if parsed is not None:
            records.append(parsed)
    return records
