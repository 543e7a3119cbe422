"""A real gateway and a real agent on the slurm backend, against a real single-node Slurm: a vendor's job is
placed on the site, runs as a Slurm batch job with its cards and the rendezvous variables of a one-node world, and
ends SUCCEEDED. Multi-node jobs: tests/integration/test_slurm_nodes.py."""

from __future__ import annotations

from pathlib import Path

from gateway.jobs.model import JobSpec, JobState, Resources, StackRun
from tests.integration.harness import GatewayHandle, start_test_agent, wait_for_capacity
from tests.slurmcluster import SlurmCluster

SHOW = (
    "echo on $SLURM_JOB_NAME with $SLURM_GPUS_ON_NODE cards "
    "as node $FEDGATE_NODE_RANK of $FEDGATE_NNODES, master $FEDGATE_MASTER_ADDR:$FEDGATE_MASTER_PORT"
)


def test_a_job_runs_to_success_as_a_slurm_batch_job(
    gateway: GatewayHandle, slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    backend = {
        "type": "slurm",
        "partition": slurm_cluster.partition,
        "slurm_conf": str(slurm_cluster.conf),
        "workdir": str(tmp_path / "jobs"),
        "poll_interval_s": 0.2,
    }
    # The operator declares more than the cluster has; the site reports what Slurm shows (4 h100 per node).
    pools = [{"class": "nvidia-h100", "cards": 8, "offered": 8, "cards_per_node": 8}]
    agent = start_test_agent(gateway, "centre-s", pools, tmp_path / "agent", backend=backend)
    try:
        wait_for_capacity(gateway, "centre-s")
        with gateway.client(gateway.pki.admin()) as admin:
            (site,) = [s for s in admin.list_sites() if s.name == "centre-s"]
        (pool,) = site.pools
        assert (pool.total, pool.offered, pool.cards_per_node) == (4, 4, 4)
        job_spec = JobSpec(
            tenant="deepsea-ai",
            project="llama-sft",
            resources=Resources("nvidia-h100", None, 2),
            runs=(StackRun("cuda", "", ("sh", "-c", SHOW)),),
        )
        with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
            job = alice.create_job(job_spec)
            for _ in alice.watch_job(job.job_id, timeout=60):
                pass
            final = alice.get_job(job.job_id)
        assert final.state == JobState.SUCCEEDED, final.reasons
        assert final.exit_code == 0 and final.placements[0].site == "centre-s"
        output = (tmp_path / "jobs" / job.job_id / "1" / "output.log").read_text()
        (slurm_id,) = slurm_cluster.jobs_named(f"fedgate.{job.job_id}.1")  # it ran through Slurm
        # A world of one node: rank 0, the master its own node's address, the port from the Slurm job id.
        world = f"node 0 of 1, master 127.0.0.1:{29500 + int(slurm_id) % 500}"
        assert output == f"on fedgate.{job.job_id}.1 with 2 cards as {world}\n"
    finally:
        agent.stop()
