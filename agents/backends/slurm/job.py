"""What an attempt looks like to Slurm: its job name, its batch script and its sbatch command line.

Owns: the naming rule `fedgate.<job_id>.<epoch>` that adoption relies on, the script that exports the job's
environment and FEDGATE_* and then execs the command, and the sbatch options every attempt gets. Pure: it
builds text and argument lists, it runs nothing (`agents.backends.slurm.backend` does).
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from agents.backends.base import LaunchSpec
from agents.backends.slurm.config import SlurmOptions

LOG_FILE = "output.log"
SCRIPT_FILE = "job.sh"
JOB_NAME_PREFIX = "fedgate"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def job_name(job_id: str, epoch: int) -> str:
    """The Slurm job name of an attempt; `adopt` finds attempts by it."""
    return f"{JOB_NAME_PREFIX}.{job_id}.{epoch}"


def sbatch_arguments(spec: LaunchSpec, options: SlurmOptions, gres: str, directory: Path) -> list[str]:
    """The sbatch command line of an attempt; `gres` is the --gres value ('' for no cards)."""
    args = [
        "sbatch",
        "--parsable",
        f"--job-name={job_name(spec.job_id, spec.epoch)}",
        f"--partition={options.partition}",
        "--nodes=1",
        "--ntasks=1",
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


def batch_script(spec: LaunchSpec) -> str:
    """The attempt's batch script: the job's environment, then FEDGATE_* (which the job cannot override),
    then the command exec'd without a shell in between, so its exit code and signals are the job's own."""
    env = spec.job_environment()
    env["FEDGATE_DEVICES"] = ",".join(str(d) for d in spec.devices)
    bad = unusable_env_names(env)
    if bad:  # `export NAME=value` lines: a name with a newline would start a line of its own
        raise ValueError(f"environment variable names {bad} cannot be exported")
    program = shlex.quote(spec.command[0])
    lines = [
        "#!/bin/sh",
        f"# fedgate job {spec.job_id}, epoch {spec.epoch}, attempt {spec.attempt}: written by the site agent",
        *(f"export {key}={shlex.quote(value)}" for key, value in env.items()),
        f"if ! command -v {program} >/dev/null 2>&1; then",
        f"  printf 'fedgate: executable %s was not found on %s\\n' {program} \"$(hostname)\" >&2",
        "  exit 127",
        "fi",
        "exec " + " ".join(shlex.quote(part) for part in spec.command),
    ]
    return "\n".join(lines) + "\n"


def unusable_env_names(env: Mapping[str, str]) -> list[str]:
    """Names a shell cannot export (`MY-VAR`, `1X`), sorted; empty when all are fine."""
    return sorted(k for k in env if not _ENV_NAME.fullmatch(k))
