"""Reading Slurm's output, on text captured from Slurm 22.05 (and sacct/slurmdbd forms from its manual)."""

from __future__ import annotations

import signal

from agents.backends.base import ExitStatus
from agents.backends.slurm.config import DEFAULT_GRES_CLASSES
from agents.backends.slurm.parse import (
    ClassCapacity,
    Gres,
    JobRow,
    exit_status,
    parse_gres,
    parse_sacct,
    parse_sbatch_parsable,
    parse_scontrol_job,
    parse_sinfo_nodes,
    parse_squeue,
    partition_capacity,
    unmapped_gres,
)

# sinfo --noheader --Node --partition=gpu --format=%N|%G|%T
SINFO = """\
gpu-a01|gpu:h100:8(S:0-1)|mixed
gpu-a02|gpu:h100:8(S:0-1)|idle
gpu-a03|gpu:h100:8(S:0-1)|drained
gpu-a04|gpu:h100:8(S:0-1)|idle*
gpu-b01|gpu:a100:4(S:0),gpu:v100:2(S:1)|allocated
npu-c01|npu:910b:8,mps:200|idle~
cpu-d01|(null)|idle
"""


def test_gres_strings_of_every_shape_are_read() -> None:
    assert parse_gres("gpu:h100:4,gpu:a100:2") == (Gres("gpu", "h100", 4), Gres("gpu", "a100", 2))
    assert parse_gres("gpu:h100:8(S:0-1)") == (Gres("gpu", "h100", 8),)
    assert parse_gres("gpu:tesla:2(S:0,1),mps:100") == (Gres("gpu", "tesla", 2), Gres("mps", "", 100))
    assert parse_gres("gpu:8") == (Gres("gpu", "", 8),)
    assert parse_gres("gpu") == (Gres("gpu", "", 1),)
    assert parse_gres("shard:1K") == (Gres("shard", "", 1024),)
    assert parse_gres("(null)") == () and parse_gres("  ") == ()


def test_sinfo_rows_keep_each_node_once_with_its_state() -> None:
    nodes = parse_sinfo_nodes(SINFO + "gpu-a01|gpu:h100:8(S:0-1)|mixed\n")  # a node in two partitions
    assert [n.name for n in nodes] == ["gpu-a01", "gpu-a02", "gpu-a03", "gpu-a04", "gpu-b01", "npu-c01", "cpu-d01"]
    usable = {n.name for n in nodes if n.usable}
    assert usable == {"gpu-a01", "gpu-a02", "gpu-b01", "npu-c01", "cpu-d01"}, "drained and unresponsive are not"


def test_capacity_counts_typed_gres_of_usable_nodes_per_class() -> None:
    capacity = partition_capacity(parse_sinfo_nodes(SINFO), DEFAULT_GRES_CLASSES)
    assert capacity == {
        "nvidia-h100": ClassCapacity("nvidia-h100", "gpu", "h100", 16, 8),
        "nvidia-a100": ClassCapacity("nvidia-a100", "gpu", "a100", 4, 4),
        "ascend-910b": ClassCapacity("ascend-910b", "npu", "910b", 8, 8),
    }
    assert capacity["ascend-910b"].gres_request(2) == "npu:910b:2"
    assert unmapped_gres(parse_sinfo_nodes(SINFO), DEFAULT_GRES_CLASSES) == ["gpu:v100"]


def test_an_operators_gres_map_adds_classes() -> None:
    table = {**DEFAULT_GRES_CLASSES, "v100": "nvidia-v100"}
    assert partition_capacity(parse_sinfo_nodes(SINFO), table)["nvidia-v100"].cards == 2


def test_two_gres_types_of_one_class_keep_the_larger() -> None:
    nodes = parse_sinfo_nodes("n1|npu:910b:8|idle\nn2|npu:ascend910b:8|idle\nn3|npu:ascend910b:8|idle\n")
    found = partition_capacity(nodes, DEFAULT_GRES_CLASSES)["ascend-910b"]
    assert (found.gres_type, found.cards) == ("ascend910b", 16)


def test_squeue_rows() -> None:
    text = "1|fedgate.a.1|FAILED\n6|fedgate.d.1|PENDING\n4|fedgate.b.1|RUNNING\n5|fedgate.c.1|COMPLETING\n"
    rows = parse_squeue(text)
    assert rows[0] == JobRow("1", "fedgate.a.1", "FAILED")
    assert [r.ended for r in rows] == [True, False, False, False], "COMPLETING still has processes"


def test_sacct_rows_skip_steps_and_cut_cancelled_by() -> None:
    # sacct --noheader --parsable2 --format=JobIDRaw,JobName,State,ExitCode (with and without --allocations)
    text = (
        "2|j.sh|FAILED|0:1\n"
        "1|fedgate.a.1|FAILED|3:0\n"
        "1.batch|batch|FAILED|3:0\n"
        "4|fedgate.b.1|FAILED|0:15\n"
        "5|fedgate.c.1|CANCELLED by 0|0:0\n"
        "7|fedgate.e.2|COMPLETED|0:0\n"
    )
    rows = {r.slurm_id: r for r in parse_sacct(text)}
    assert set(rows) == {"1", "2", "4", "5", "7"}
    assert rows["1"] == JobRow("1", "fedgate.a.1", "FAILED", 3, 0)
    assert rows["5"].state == "CANCELLED" and rows["5"].ended


def test_scontrol_job_record() -> None:
    text = (
        "JobId=1 JobName=fedgate.a.1 UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901759 Nice=0 "
        "Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 "
        "BatchFlag=1 Reboot=0 ExitCode=3:0 RunTime=00:00:00 TimeLimit=00:02:00 Command=/tmp/sl t/j.sh "
        "WorkDir=/tmp/sl_t StdErr=/tmp/sl_t/out.log TresPerNode=gres:gpu:h100:2\n"
    )
    assert parse_scontrol_job(text) == JobRow("1", "fedgate.a.1", "FAILED", 3, 0)
    assert parse_scontrol_job("slurm_load_jobs error: Invalid job id specified\n") is None


def test_sbatch_parsable_answers() -> None:
    assert parse_sbatch_parsable("123\n") == "123"
    assert parse_sbatch_parsable("123;cluster-a\n") == "123"
    for bad in ("", "Submitted batch job 5", "x;y"):
        try:
            parse_sbatch_parsable(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was read as a job id")


def test_exit_status_follows_code_and_signal() -> None:
    assert exit_status(JobRow("1", "n", "COMPLETED", 0, 0)) == ExitStatus(0)
    assert exit_status(JobRow("1", "n", "FAILED", 3, 0)) == ExitStatus(3)
    assert exit_status(JobRow("1", "n", "FAILED", 0, 15)) == ExitStatus(143, signal.SIGTERM)
    assert exit_status(JobRow("1", "n", "CANCELLED", 0, 9)) == ExitStatus(137, signal.SIGKILL)


def test_a_job_that_ended_badly_without_a_code_never_reads_as_success() -> None:
    assert exit_status(JobRow("1", "n", "CANCELLED", 0, 0)) == ExitStatus(143, signal.SIGTERM)
    assert exit_status(JobRow("1", "n", "TIMEOUT", 0, 0)).signal_number == signal.SIGTERM
    for state in ("FAILED", "NODE_FAIL", "BOOT_FAIL", "OUT_OF_MEMORY"):
        assert not exit_status(JobRow("1", "n", state, 0, 0)).succeeded, state
