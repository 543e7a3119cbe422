"""The slurm backend against a real single-node Slurm: discovery, launch, exit codes, cancel, adoption,
refusals and output. The cluster (tests/slurmcluster.py) has 4 gpu:h100 and 2 gpu:a100 on one node."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from agents.backends.base import BackendSettings, ExitStatus, LaunchSpec
from agents.backends.registry import open_backend
from agents.backends.slurm.backend import SlurmBackend, SlurmHandle
from agents.backends.slurm.config import SlurmOptions
from agents.backends.slurm.job import job_name
from agents.core.model import PoolSpec
from agents.errors import BackendError, LaunchFailed
from tests.slurmcluster import SHORT_PARTITION, SlurmCluster
from tests.waiting import eventually_async

_serial = itertools.count(1)
END_TIMEOUT_S = 60.0
"""Bound on waiting for a job's end; a stuck cluster fails the test instead of hanging the run."""


def make_backend(cluster: SlurmCluster, workdir: Path, **changes: object) -> SlurmBackend:
    fields: dict[str, object] = {
        "partition": cluster.partition,
        "slurm_conf": cluster.conf,
        "poll_interval_s": 0.2,
    }
    fields.update(changes)
    options = SlurmOptions(**fields)  # type: ignore[arg-type]
    return SlurmBackend(BackendSettings(type="slurm", workdir=workdir, options=options))


@pytest.fixture
async def backend(slurm_cluster: SlurmCluster, tmp_path: Path) -> AsyncIterator[SlurmBackend]:
    made = make_backend(slurm_cluster, tmp_path / "work")
    await made.discover()
    yield made
    await made.close()


def spec(*command: str, cards: int = 1, accelerator: str = "nvidia-h100", **changes: object) -> LaunchSpec:
    fields: dict[str, object] = {
        "site": "centre-s",
        "job_id": f"slurm-{os.getpid()}-{next(_serial)}",
        "epoch": 3,
        "attempt": 1,
        "accelerator_class": accelerator,
        "stack": "cuda",
        "command": command,
        "devices": tuple(range(cards)),
        "env": {"FROM_JOB": "yes", "FEDGATE_SITE": "spoofed"},
    }
    fields.update(changes)
    return LaunchSpec(**fields)  # type: ignore[arg-type]


async def ended(backend: SlurmBackend, handle: SlurmHandle) -> ExitStatus:
    return await asyncio.wait_for(backend.wait(handle), END_TIMEOUT_S)


async def output_of(backend: SlurmBackend, handle: SlurmHandle) -> str:
    return (await backend.read_output(handle, 0, 1 << 20)).decode()


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    await eventually_async(check, END_TIMEOUT_S, what, poll_s=0.1)  # each look may run squeue


async def test_discovery_maps_typed_gres_to_catalogue_classes(backend: SlurmBackend) -> None:
    found = {
        c.accelerator_class: (c.gres_name, c.gres_type, c.cards, c.max_per_node) for c in backend.capacity.values()
    }
    assert found == {"nvidia-h100": ("gpu", "h100", 4, 4), "nvidia-a100": ("gpu", "a100", 2, 2)}
    declared = [
        PoolSpec("nvidia-h100", cards=16, offered=12, cards_per_node=8),
        PoolSpec("nvidia-a100", cards=2, offered=1, cards_per_node=2, labels={"zone": "b"}),
        PoolSpec("ascend-910b", cards=8, offered=8, cards_per_node=8),
    ]
    pools = {p.accelerator_class: p for p in backend.pools(declared)}
    assert set(pools) == {"nvidia-h100", "nvidia-a100"}, "a class the partition lacks is not offered"
    h100, a100 = pools["nvidia-h100"], pools["nvidia-a100"]
    assert (h100.cards, h100.offered, h100.cards_per_node) == (4, 4, 4), "declared numbers are lowered to the node"
    assert (a100.cards, a100.offered, a100.cards_per_node, dict(a100.labels)) == (2, 1, 2, {"zone": "b"})


async def test_an_unknown_partition_fails_discovery_naming_the_real_ones(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    settings = BackendSettings(
        type="slurm", workdir=tmp_path, options=SlurmOptions(partition="nope", slurm_conf=slurm_cluster.conf)
    )
    with pytest.raises(BackendError) as refused:
        await open_backend(settings)
    assert "'nope'" in refused.value.message and slurm_cluster.partition in refused.value.message


async def test_a_job_runs_with_its_cards_env_and_output(
    backend: SlurmBackend, slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDGATE_AGENT_SECRET", "must-not-leak")
    script = "echo hello from slurm; env | grep -E '^(FEDGATE_|FROM_JOB|SLURM_JOB_NAME|SLURM_GPUS_ON_NODE)' | sort"
    launch = spec("sh", "-c", script, cards=2)
    handle = await backend.launch(launch)
    assert await ended(backend, handle) == ExitStatus(exit_code=0)
    output = await output_of(backend, handle)
    assert "hello from slurm" in output
    assert f"SLURM_JOB_NAME={job_name(launch.job_id, 3)}" in output and "SLURM_GPUS_ON_NODE=2" in output
    assert f"FEDGATE_JOB_ID={launch.job_id}" in output and "FEDGATE_EPOCH=3" in output
    assert "FEDGATE_SITE=centre-s" in output and "FEDGATE_DEVICES=0,1" in output and "FROM_JOB=yes" in output
    assert "must-not-leak" not in output, "the agent's own FEDGATE_* reached the job"
    record = slurm_cluster.command("scontrol", "--oneliner", "show", "job", handle.slurm_id)
    assert "TresPerNode=gres:gpu:h100:2" in record and f"Partition={slurm_cluster.partition}" in record
    assert handle.directory == backend_dir(backend, launch) and f"WorkDir={handle.directory}" in record
    assert await backend.read_output(handle, 6, 4) == b"from"
    assert await backend.read_output(handle, len(output.encode()), 100) == b"", "b'' at the end"


def backend_dir(backend: SlurmBackend, launch: LaunchSpec) -> Path:
    return backend._workdir / launch.job_id / str(launch.epoch)


async def test_a_failing_job_reports_its_exit_code(backend: SlurmBackend) -> None:
    handle = await backend.launch(spec("sh", "-c", "echo failing >&2; exit 3"))
    status = await ended(backend, handle)
    assert status == ExitStatus(exit_code=3) and not status.succeeded
    assert "failing" in await output_of(backend, handle), "stderr goes to the same output file"


async def test_a_missing_executable_fails_with_a_message_in_the_output(backend: SlurmBackend) -> None:
    handle = await backend.launch(spec("no-such-program-here"))
    assert await ended(backend, handle) == ExitStatus(exit_code=127)
    assert "no-such-program-here" in await output_of(backend, handle)


async def test_cancel_asks_with_term_then_kills_after_the_grace(backend: SlurmBackend) -> None:
    stubborn = "trap 'echo got TERM' TERM; echo started; while true; do sleep 0.1; done"
    handle = await backend.launch(spec("sh", "-c", stubborn))
    await until(lambda: _has_output(backend, handle, "started"), "the job to start")
    await asyncio.wait_for(backend.cancel(handle, grace_s=1.0), END_TIMEOUT_S)
    assert await ended(backend, handle) == ExitStatus(exit_code=137, signal_number=9), "KILL after the grace"
    assert "got TERM" in await output_of(backend, handle), "TERM came first"
    await backend.cancel(handle, grace_s=1.0)  # again, on an ended job: harmless


async def test_cancel_of_a_job_that_obeys_term_ends_it_by_that_signal(backend: SlurmBackend) -> None:
    handle = await backend.launch(spec("sh", "-c", "echo started; exec sleep 600"))
    await until(lambda: _has_output(backend, handle, "started"), "the job to start")
    await asyncio.wait_for(backend.cancel(handle, grace_s=30.0), END_TIMEOUT_S)
    assert await ended(backend, handle) == ExitStatus(exit_code=143, signal_number=15)


async def test_cancel_of_a_pending_job_removes_it_from_the_queue(
    backend: SlurmBackend, slurm_cluster: SlurmCluster
) -> None:
    holder = await backend.launch(spec("sleep", "600", cards=4))
    waiting = await backend.launch(spec("sleep", "600", cards=1))
    await until(lambda: _state_is(slurm_cluster, waiting, "PENDING"), "the second job to wait for cards")
    await asyncio.wait_for(backend.cancel(waiting, grace_s=30.0), END_TIMEOUT_S)
    assert not (await ended(backend, waiting)).succeeded
    await asyncio.wait_for(backend.cancel(holder, grace_s=30.0), END_TIMEOUT_S)
    assert not (await ended(backend, holder)).succeeded


async def test_adopt_after_a_lost_reply_finds_the_same_job_without_a_second_sbatch(
    backend: SlurmBackend, slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    launch = spec("sh", "-c", "echo adopted output; sleep 1")
    lost = await backend.launch(launch)  # the reply to the gateway is lost: this handle is dropped
    restarted = make_backend(slurm_cluster, tmp_path / "work")  # as after an agent restart
    await restarted.discover()
    try:
        found = await restarted.adopt(launch)
        assert found is not None and found.slurm_id == lost.slurm_id
        assert restarted.commands.calls["sbatch"] == 0
        assert slurm_cluster.jobs_named(job_name(launch.job_id, launch.epoch)) == [lost.slurm_id]
        assert await ended(restarted, found) == ExitStatus(exit_code=0)
        assert "adopted output" in await output_of(restarted, found)
        assert await restarted.adopt(spec("true")) is None, "nothing to adopt for an attempt never started"
        other_epoch = replace(launch, epoch=4)
        assert await restarted.adopt(other_epoch) is None, "another epoch is another attempt"
    finally:
        await restarted.close()


async def test_bad_job_specs_are_refused_before_submission_with_a_reason(backend: SlurmBackend) -> None:
    cases = {
        "empty command": (spec(), "empty command"),
        "class the cluster lacks": (spec("true", accelerator="nvidia-h20"), "no nvidia-h20 cards"),
        "more cards than a node": (spec("true", cards=5), "has 4"),
        "bad env name": (spec("true", env={"MY-VAR": "x"}), "MY-VAR"),
    }
    for case, (launch, reason) in cases.items():
        with pytest.raises(LaunchFailed) as refused:
            await backend.launch(launch)
        assert reason in refused.value.message, case
    assert backend.commands.calls["sbatch"] == 0


async def test_sbatchs_own_refusal_is_a_launch_failure_with_slurms_reason(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    short = make_backend(slurm_cluster, tmp_path / "work", partition=SHORT_PARTITION)
    await short.discover()
    with pytest.raises(LaunchFailed) as refused:
        await short.launch(spec("true", max_runtime_s=3600))
    assert refused.value.message.startswith("Slurm refused the job: ")
    assert "time limit" in refused.value.message.lower()
    handle = await short.launch(spec("true", max_runtime_s=60))  # within the partition's limit: accepted
    assert await ended(short, handle) == ExitStatus(exit_code=0)
    await short.close()


async def test_one_squeue_polls_every_followed_job(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    slow = make_backend(slurm_cluster, tmp_path / "work", poll_interval_s=3600.0)
    await slow.discover()
    handles = [await slow.launch(spec("sleep", "600")) for _ in range(3)]
    await asyncio.sleep(0)  # let the loop's first tick start; it then sleeps for an hour unless poked
    before = dict(slow.commands.calls)
    await slow._watch.poll_once()
    assert slow.commands.calls["squeue"] - before.get("squeue", 0) == 1
    assert slow.commands.calls["sacct"] == before.get("sacct", 0), "nothing ended: no end records read"
    assert {slow._watch.state(h.slurm_id) for h in handles} <= {"RUNNING", "PENDING", "CONFIGURING"}
    await asyncio.wait_for(asyncio.gather(*(slow.cancel(h, grace_s=30.0) for h in handles)), END_TIMEOUT_S)
    await slow.close()


async def _has_output(backend: SlurmBackend, handle: SlurmHandle, text: str) -> bool:
    return text in await output_of(backend, handle)


async def _state_is(cluster: SlurmCluster, handle: SlurmHandle, state: str) -> bool:
    out = await asyncio.to_thread(cluster.command, "squeue", "--noheader", f"--jobs={handle.slurm_id}", "--format=%T")
    return out.strip() == state
