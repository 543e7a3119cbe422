"""What an attempt looks like to Slurm: its job name, its batch script and its sbatch command line.

Owns: the naming rule `fedgate.<job_id>.<epoch>` that adoption relies on, the script that exports the job's
environment, FEDGATE_* and the rendezvous variables and then execs the command (one node) or srun's one task per
node (several: `agents.backends.slurm.nodes` writes that part), and the sbatch options every attempt gets. Pure:
it builds text and argument lists, it runs nothing (`agents.backends.slurm.backend` does).
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from agents.backends.base import LaunchSpec
from agents.backends.slurm.config import SlurmOptions
from agents.backends.slurm.nodes import master_lines, rendezvous_exports, srun_command, task_script
from fedgate.common import rendezvous

LOG_FILE = "output.log"
SCRIPT_FILE = "job.sh"
JOB_NAME_PREFIX = "fedgate"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def job_name(job_id: str, epoch: int) -> str:
    """The Slurm job name of an attempt; `adopt` finds attempts by it."""
    return f"{JOB_NAME_PREFIX}.{job_id}.{epoch}"


def sbatch_arguments(spec: LaunchSpec, options: SlurmOptions, gres: str, directory: Path) -> list[str]:
    """The sbatch command line of an attempt; `gres` is the --gres value of each node ('' for no cards). A
    multi-node attempt is one allocation of its nodes with one task on each."""
    nodes = len(spec.nodes)
    shape = [f"--nodes={nodes}", "--ntasks-per-node=1"] if nodes > 1 else ["--nodes=1", "--ntasks=1"]
    args = [
        "sbatch",
        "--parsable",
        f"--job-name={job_name(spec.job_id, spec.epoch)}",
        f"--partition={options.partition}",
        *shape,
        "--no-requeue",
        f"--chdir={directory}",
        f"--output={directory / LOG_FILE}",
        "--open-mode=append",
    ]
    if options.account:
        args.append(f"--account={options.account}")
    if gres:
        args.append(f"--gres={gres}")
    if spec.max_runtime_s > 0:
        args.append(f"--time={math.ceil(spec.max_runtime_s / 60) + 1}")
    args.append(str(directory / SCRIPT_FILE))
    return args


def batch_script(spec: LaunchSpec, directory: Path) -> str:
    """The attempt's batch script (it runs on the allocation's first node, in `directory`): rank 0's master and
    the rendezvous variables, then the job's environment without them (the job cannot override them) and
    FEDGATE_*; then for one node the command exec'd without a shell in between, so its exit code and signals
    are the job's own, and for several nodes srun running `node_task_script` on each."""
    reserved = set(rendezvous.names(spec.stack))
    env = {k: v for k, v in spec.job_environment().items() if k not in reserved}
    env["FEDGATE_DEVICES"] = ",".join(str(d) for d in spec.devices)
    bad = unusable_env_names(env)
    if bad:  # `export NAME=value` lines: a name with a newline would start a line of its own
        raise ValueError(f"environment variable names {bad} cannot be exported")
    lines = [
        "#!/bin/sh",
        f"# fedgate job {spec.job_id}, epoch {spec.epoch}, attempt {spec.attempt}: written by the site agent",
        *master_lines(spec),
        *rendezvous_exports(spec),
        *(f"export {key}={shlex.quote(value)}" for key, value in env.items()),
    ]
    if len(spec.nodes) > 1:
        lines.append(srun_command(spec, directory))
    else:
        lines += [*_missing_program(spec, "  exit 127"), "fi", "exec " + _command(spec)]
    return "\n".join(lines) + "\n"


def node_task_script(spec: LaunchSpec, directory: Path) -> str:
    """The script srun runs on each node of a multi-node attempt (`agents.backends.slurm.nodes.task_script`)."""
    run = [*_missing_program(spec, "  code=127"), "else", f"  {_command(spec)}", "  code=$?", "fi"]
    return task_script(spec, directory, run)


def _missing_program(spec: LaunchSpec, then: str) -> list[str]:
    program = shlex.quote(spec.command[0])
    return [
        f"if ! command -v {program} >/dev/null 2>&1; then",
        f"  printf 'fedgate: executable %s was not found on %s\\n' {program} \"$(hostname)\" >&2",
        then,
    ]


def _command(spec: LaunchSpec) -> str:
    return " ".join(shlex.quote(part) for part in spec.command)


def unusable_env_names(env: Mapping[str, str]) -> list[str]:
    """Names a shell cannot export (`MY-VAR`, `1X`), sorted; empty when all are fine."""
    return sorted(k for k in env if not _ENV_NAME.fullmatch(k))
