"""Multi-node jobs on a real Slurm of two nodes (tests/slurmcluster.py, partition `multi`: two slurmd, 4 gpu:h100
each), through a real gateway and agent: one allocation with one task per node, every rank sees its world, one
failing rank fails the attempt once naming its node, a cancel reaches both nodes, and a restarted agent adopts a
multi-node attempt as it does any other."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.backends.base import BackendSettings, ExitStatus, LaunchSpec
from agents.backends.slurm.backend import SlurmBackend
from agents.backends.slurm.config import SlurmOptions
from fedgate.common.rendezvous import Rendezvous
from gateway.jobs.model import Job, JobSpec, JobState, Resources, StackRun
from tests.integration.harness import AgentHandle, GatewayHandle, start_test_agent, wait_for_capacity
from tests.jobs import JOB_PYTHON, reachable, shared_folder
from tests.slurmcluster import SlurmCluster
from tests.waiting import eventually

RENDEZVOUS = Path(__file__).resolve().parents[2] / "examples" / "jobs" / "two-node" / "rendezvous.py"
SITE = "centre-s"
END_TIMEOUT_S = 90.0


@pytest.fixture
def agent(gateway: GatewayHandle, slurm_cluster: SlurmCluster, tmp_path: Path) -> Iterator[AgentHandle]:
    backend = {
        "type": "slurm",
        "partition": slurm_cluster.multi_partition,
        "slurm_conf": str(slurm_cluster.conf),
        "workdir": str(tmp_path / "jobs"),
        "poll_interval_s": 0.2,
    }
    pools = [{"class": "nvidia-h100", "cards": 16, "offered": 16, "cards_per_node": 8}]
    handle = start_test_agent(gateway, SITE, pools, tmp_path / "agent", backend=backend)
    try:
        wait_for_capacity(gateway, SITE)
        yield handle
    finally:
        handle.stop()


def rendezvous_job(tmp_path: Path, *env: tuple[str, str]) -> JobSpec:
    scripts = reachable(tmp_path / "scripts")  # where the job's user can read it
    script = Path(shutil.copy(RENDEZVOUS, scripts / "rendezvous.py"))
    return two_node_job(JOB_PYTHON, str(script), env=(("FEDGATE_RENDEZVOUS_TIMEOUT_S", "30"), *env))


def two_node_job(*command: str, env: tuple[tuple[str, str], ...] = ()) -> JobSpec:
    return JobSpec(
        tenant="deepsea-ai",
        project="llama-sft",
        resources=Resources("nvidia-h100", None, 8, nodes=2),
        runs=(StackRun("cuda", "", command),),
        env=env,
    )


def run_to_end(gateway: GatewayHandle, spec: JobSpec) -> Job:
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        job = alice.create_job(spec)
        for _ in alice.watch_job(job.job_id, timeout=END_TIMEOUT_S):
            pass
        return alice.get_job(job.job_id)


def slurm_record(cluster: SlurmCluster, job: Job) -> dict[str, str]:
    (slurm_id,) = cluster.jobs_named(f"fedgate.{job.job_id}.{job.epoch}")
    text = cluster.command("scontrol", "--oneliner", "show", "job", slurm_id)
    return dict(item.split("=", 1) for item in text.split() if "=" in item)


def attempt_folder(tmp_path: Path, job_id: str, epoch: int = 1) -> Path:
    return tmp_path / "jobs" / job_id / str(epoch)


def test_the_site_offers_its_nodes_as_sinfo_shows_them(gateway: GatewayHandle, agent: AgentHandle) -> None:
    with gateway.client(gateway.pki.admin()) as admin:
        (site,) = [s for s in admin.list_sites() if s.name == SITE]
    (pool,) = site.pools
    assert (pool.total, pool.cards_per_node) == (8, 4), "two nodes of 4 h100 each, not the declared 2 x 8"


def test_a_two_node_job_is_one_allocation_with_one_task_per_node_and_every_rank_agrees(
    gateway: GatewayHandle, agent: AgentHandle, slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    final = run_to_end(gateway, rendezvous_job(tmp_path))
    output = (attempt_folder(tmp_path, final.job_id, final.epoch) / "output.log").read_text()
    assert final.state == JobState.SUCCEEDED, (final.reasons, output)
    record = slurm_record(slurm_cluster, final)
    assert (record["NumNodes"], record["NumTasks"], record["NodeList"]) == ("2", "2", "fg[1-2]")
    assert record["TresPerNode"] == "gres:gpu:h100:4", "the cards are asked per node"
    for rank in (0, 1):
        assert f"node {rank} of 2: world agreed (ranks 0-1, 8 cards; master 127.0.0.1:" in output, output
    records = attempt_folder(tmp_path, final.job_id, final.epoch) / "nodes"
    exits = sorted(p.read_text() for p in records.glob("*.exit"))
    assert exits == ["0 0 fg1\n", "0 1 fg2\n"], "one task on each node, ranks in node order"


def test_a_failing_rank_fails_the_attempt_once_naming_its_node(
    gateway: GatewayHandle, agent: AgentHandle, tmp_path: Path
) -> None:
    final = run_to_end(gateway, rendezvous_job(tmp_path, ("FEDGATE_FAIL_RANK", "1")))
    output = (attempt_folder(tmp_path, final.job_id, final.epoch) / "output.log").read_text()
    assert final.state == JobState.FAILED and final.exit_code == 3, (final.reasons, output)
    assert "node 1: failing on purpose" in output
    failed = [e for e in gateway.running.core.store.events(final.job_id) if e.state == JobState.FAILED]
    assert len(failed) == 1 and "exited with code 3 on node 1 (fg2)" in failed[0].message, failed
    assert final.attempt == 1, "one failed attempt, not one per node"


def test_a_cancel_reaches_the_task_on_every_node(
    gateway: GatewayHandle, agent: AgentHandle, slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    marks = shared_folder(tmp_path / "marks")
    stubborn = (
        f'trap "touch {shlex.quote(str(marks))}/stopped-$SLURMD_NODENAME; exit 143" TERM; '
        "echo started on $SLURMD_NODENAME; while true; do sleep 0.2; done"
    )
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        job = alice.create_job(two_node_job("sh", "-c", stubborn))
        log = attempt_folder(tmp_path, job.job_id) / "output.log"
        eventually(lambda: _lines(log) >= {"started on fg1", "started on fg2"}, END_TIMEOUT_S, "both tasks to start")
        alice.cancel_job(job.job_id, "enough")
        for _ in alice.watch_job(job.job_id, timeout=END_TIMEOUT_S):
            pass
        final = alice.get_job(job.job_id)
    assert final.state == JobState.CANCELLED
    # The gateway records the cancel at once; the agent then stops the allocation with every node's task.
    eventually(
        lambda: slurm_record(slurm_cluster, final)["JobState"] not in {"RUNNING", "COMPLETING"},
        END_TIMEOUT_S,
        "Slurm to end the allocation",
        detail=log.read_text,
    )
    assert sorted(p.name for p in marks.iterdir()) == ["stopped-fg1", "stopped-fg2"], "TERM reached both tasks"
    assert slurm_record(slurm_cluster, final)["NumNodes"] == "2"


def _lines(path: Path) -> set[str]:
    return set(path.read_text().splitlines()) if path.exists() else set()


async def test_a_restarted_agent_adopts_a_multi_node_attempt_and_still_names_the_failing_node(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    def backend() -> SlurmBackend:
        options = SlurmOptions(
            partition=slurm_cluster.multi_partition, slurm_conf=slurm_cluster.conf, poll_interval_s=0.2
        )
        return SlurmBackend(BackendSettings(type="slurm", workdir=tmp_path / "work", options=options))

    fails_later = 'echo up; sleep 1; [ "$FEDGATE_NODE_RANK" = 1 ] && exit 4; exec sleep 60'
    launch = LaunchSpec(
        *("centre-s", f"adopt-{os.getpid()}", 1, 1, "nvidia-h100", "cuda", ("sh", "-c", fails_later), tuple(range(4))),
        node_devices=((0, 1), (2, 3)),
        rendezvous=Rendezvous(nnodes=2, world_size=4),
    )
    first, restarted = backend(), backend()
    try:
        await first.discover()
        started = await first.launch(launch)
        await first.close()  # the agent stops; the job runs on
        await restarted.discover()
        adopted = await restarted.adopt(launch)
        assert adopted is not None and (adopted.slurm_id, adopted.nodes) == (started.slurm_id, 2)
        status = await asyncio.wait_for(restarted.wait(adopted), END_TIMEOUT_S)
        assert status == ExitStatus(exit_code=4, node="node 1 (fg2)")
        assert restarted.commands.calls["sbatch"] == 0
    finally:
        await first.close()
        await restarted.close()
