"""A Slurm attempt's nodes, without Slurm: the sbatch line and scripts of one- and multi-node attempts, run with
`sh` against stand-in `srun` and `scontrol` programs, and reading which node failed first."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agents.backends.base import LaunchSpec
from agents.backends.slurm.config import SlurmOptions
from agents.backends.slurm.job import batch_script, node_task_script, sbatch_arguments
from agents.backends.slurm.nodes import (
    NODES_FOLDER,
    TASK_FILE,
    NodeExit,
    first_failure,
    parse_node_exit,
    read_node_exits,
)
from fedgate.common.rendezvous import Rendezvous

SHOW = 'echo "NNODES=$FEDGATE_NNODES RANK=$FEDGATE_NODE_RANK/$NODE_RANK/$PET_NODE_RANK '
SHOW += "MASTER=$FEDGATE_MASTER_ADDR:$FEDGATE_MASTER_PORT TORCH=$MASTER_ADDR:$MASTER_PORT "
SHOW += 'WORLD=$FEDGATE_WORLD_SIZE PER_NODE=$FEDGATE_NPROC_PER_NODE"'

FAKE_SCONTROL = """#!/bin/sh
# scontrol as a job on nodes cn[07-08] sees it: cn07 is reached at 10.1.0.7
case "$*" in
  "show hostnames cn[07-08]") printf 'cn07\\ncn08\\n' ;;
  "--oneliner show node cn07") echo "NodeName=cn07 Arch=x86_64 NodeAddr=10.1.0.7 NodeHostName=cn07 Port=0" ;;
  *) exit 1 ;;
esac
"""

FAKE_SRUN = """#!/bin/sh
# srun as it starts one task per node: every task with its SLURM_NODEID and SLURMD_NODENAME; args to a file
echo "$@" > "${0%/*}/srun.args"
shift $(($# - 2))
SLURM_NODEID=0 SLURMD_NODENAME=cn07 "$@"; first=$?
SLURM_NODEID=1 SLURMD_NODENAME=cn08 "$@"; second=$?
[ "$first" -ne 0 ] && exit "$first"
exit "$second"
"""


def spec(*command: str, nodes: int = 2, world: Rendezvous | None = None, **changes: object) -> LaunchSpec:
    per_node = 4
    devices = tuple(range(nodes * per_node))
    node_devices = tuple(devices[i * per_node : (i + 1) * per_node] for i in range(nodes)) if nodes > 1 else ()
    fields: dict[str, object] = {
        "site": "centre-s",
        "job_id": "job-7",
        "epoch": 2,
        "attempt": 1,
        "accelerator_class": "nvidia-h100",
        "stack": "cuda",
        "command": command or ("sh", "-c", SHOW),
        "devices": devices,
        "node_devices": node_devices,
        "rendezvous": world or Rendezvous(nnodes=nodes, world_size=len(devices)),
    }
    fields.update(changes)
    return LaunchSpec(**fields)  # type: ignore[arg-type]


@pytest.fixture
def slurm_bin(tmp_path: Path) -> Path:
    """A folder with stand-ins for srun and scontrol, put first on PATH by `run`."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, text in (("scontrol", FAKE_SCONTROL), ("srun", FAKE_SRUN)):
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return folder


def run(script: Path, slurm_bin: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": f"{slurm_bin}:{os.environ['PATH']}", "SLURM_JOB_ID": "1234", "SLURM_JOB_NODELIST": "cn[07-08]"}
    return subprocess.run(
        ["sh", str(script)],
        env={**base, **env},
        cwd=script.parent,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def write_scripts(launch: LaunchSpec, folder: Path) -> Path:
    (folder / NODES_FOLDER).mkdir(parents=True, exist_ok=True)
    (folder / TASK_FILE).write_text(node_task_script(launch, folder))
    (folder / "job.sh").write_text(batch_script(launch, folder))
    return folder / "job.sh"


def test_a_multi_node_part_is_one_allocation_with_one_task_per_node_and_gres_per_node() -> None:
    args = sbatch_arguments(spec(nodes=3), SlurmOptions(partition="gpu"), "gpu:h100:4", Path("/w/job-7/2"))
    assert {"--nodes=3", "--ntasks-per-node=1", "--gres=gpu:h100:4"} <= set(args)
    assert not any(a.startswith("--ntasks=") for a in args)
    one = sbatch_arguments(spec(nodes=1), SlurmOptions(partition="gpu"), "gpu:h100:4", Path("/w/job-7/2"))
    assert {"--nodes=1", "--ntasks=1"} <= set(one) and "--ntasks-per-node=1" not in one, "one node as before"


def test_every_node_sees_its_rank_and_the_first_nodes_address_and_the_failing_node_is_recorded(
    tmp_path: Path, slurm_bin: Path
) -> None:
    launch = spec("sh", "-c", SHOW + '; [ "$NODE_RANK" != 4 ] || exit 5', world=Rendezvous(4, 3, 24))
    done = run(write_scripts(launch, tmp_path), slurm_bin)
    assert done.returncode == 5, done.stderr
    # Ranks from first_rank 3; the master is the NodeAddr of the allocation's first node, port from the job id.
    common = "MASTER=10.1.0.7:29734 TORCH=10.1.0.7:29734 WORLD=24 PER_NODE=4"
    assert done.stdout.splitlines() == [f"NNODES=4 RANK=3/3/3 {common}", f"NNODES=4 RANK=4/4/4 {common}"]
    srun = (slurm_bin / "srun.args").read_text().split()
    assert srun == [
        *("--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "--wait=0"),
        *("/bin/sh", str(tmp_path / TASK_FILE)),
    ]
    records = {p.name: p.read_text() for p in (tmp_path / NODES_FOLDER).iterdir()}
    assert records == {"node-0.exit": "0 3 cn07\n", "node-1.exit": "5 4 cn08\n"}
    failed = first_failure(read_node_exits(tmp_path / NODES_FOLDER))
    assert failed is not None and (failed.exit_code, failed.describe()) == (5, "node 4 (cn08)")


def test_the_gateways_master_wins_and_is_data_not_code(tmp_path: Path, slurm_bin: Path) -> None:
    hostile = "$(touch pwned)`touch pwned`"
    launch = spec(world=Rendezvous(2, 0, 8, master_addr=hostile, master_port=29611))
    done = run(write_scripts(launch, tmp_path), slurm_bin)
    assert done.returncode == 0, done.stderr
    assert f"MASTER={hostile}:29611" in done.stdout.splitlines()[0]
    assert not (tmp_path / "pwned").exists()


def test_the_jobs_env_cannot_set_the_world_nor_hide_srun(tmp_path: Path, slurm_bin: Path) -> None:
    env = {"MASTER_ADDR": "elsewhere", "NODE_RANK": "9", "FEDGATE_NNODES": "7", "PATH": "/nowhere"}
    done = run(write_scripts(spec("/bin/sh", "-c", SHOW, env=env), tmp_path), slurm_bin)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].startswith("NNODES=2 RANK=1/1/1 MASTER=10.1.0.7:29734 TORCH=10.1.0.7:")


def test_a_one_node_attempt_execs_its_command_with_the_world_of_one(tmp_path: Path, slurm_bin: Path) -> None:
    launch = spec(nodes=1)
    script = tmp_path / "job.sh"
    script.write_text(batch_script(launch, tmp_path))
    assert "srun" not in script.read_text() and script.read_text().splitlines()[-1].startswith("exec sh -c ")
    done = run(script, slurm_bin)
    assert done.stdout == "NNODES=1 RANK=0/0/0 MASTER=10.1.0.7:29734 TORCH=10.1.0.7:29734 WORLD=4 PER_NODE=4\n"
    outside = run(script, slurm_bin, SLURM_JOB_NODELIST="")
    assert f"MASTER={os.uname().nodename}:29734" in outside.stdout, "no node list: the host it runs on"


def test_a_missing_program_on_a_node_is_its_recorded_failure(tmp_path: Path, slurm_bin: Path) -> None:
    done = run(write_scripts(spec("no-such-tool"), tmp_path), slurm_bin)
    assert done.returncode == 127 and "no-such-tool was not found" in done.stderr
    assert (tmp_path / NODES_FOLDER / "node-0.exit").read_text() == "127 0 cn07\n"


def test_the_first_node_to_fail_is_the_earliest_failing_record() -> None:
    records = [
        parse_node_exit("0 0 cn07\n", 100),
        parse_node_exit("3 1 cn08\n", 300),
        parse_node_exit("1 2 cn09\n", 200),
        parse_node_exit("137 3 cn10\n", 200),
    ]
    found = first_failure([r for r in records if r is not None])
    assert found == NodeExit(node_rank=2, node_name="cn09", exit_code=1, written_ns=200)
    assert found.describe() == "node 2 (cn09)"
    assert first_failure([NodeExit(0, "a", 0, 1), NodeExit(1, "b", 0, 2)]) is None, "all succeeded"


def test_a_record_that_is_cut_short_or_foreign_is_ignored_and_names_are_cleaned() -> None:
    assert parse_node_exit("", 1) is None and parse_node_exit("3", 1) is None
    assert parse_node_exit("x 1 cn", 1) is None and parse_node_exit("1 2 3 4", 1) is None
    assert parse_node_exit("3 1 cn08\x1b[31m;rm", 1) == NodeExit(1, "cn0831mrm", 3, 1)
    assert parse_node_exit("3 1", 1) == NodeExit(1, "", 3, 1) and NodeExit(1, "", 3, 1).describe() == "node 1"


def test_reading_the_records_skips_links_and_folders_the_jobs_user_may_have_put_there(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("9 0 fake\n")
    (tmp_path / "node-0.exit").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "node-1.exit").mkdir()
    (tmp_path / "node-2.exit").write_text("4 2 cn09\n")
    (tmp_path / "notes.txt").write_text("1 5 other\n")
    assert [(r.exit_code, r.describe()) for r in read_node_exits(tmp_path)] == [(4, "node 2 (cn09)")]
    assert read_node_exits(tmp_path / "missing") == []
