"""A cross-site gang meets as one world: a real gateway and two real agents (local backend, real processes), the
gang's parts at two centres, one of which advertises its rendezvous point. Every node of both parts runs
examples/jobs/two-node/rendezvous.py and they agree on one world of three nodes over TCP at the master the
gateway named; a failing rank fails the whole gang once, naming its node."""

from __future__ import annotations

from pathlib import Path

from gateway.jobs.model import Job, JobSpec, JobState, Resources, StackRun, Topology
from tests.integration.harness import AgentHandle, GatewayHandle, start_test_agent, wait_for_capacity
from tests.jobs import JOB_PYTHON
from tests.security.support import ALICE
from tests.waiting import eventually

PROGRAM = Path(__file__).resolve().parents[2] / "examples" / "jobs" / "two-node" / "rendezvous.py"
POOL = {"class": "ascend-910b", "cards_per_node": 4, "stack": "cann"}


def gang_job(env: tuple[tuple[str, str], ...] = ()) -> JobSpec:
    run = StackRun("cann", "", (JOB_PYTHON, "-c", PROGRAM.read_text()))
    return JobSpec(
        tenant="deepsea-ai",
        project="llama-sft",
        resources=Resources("ascend-910b", None, 12),
        runs=(run,),
        topology=Topology(max_sites=2, min_cards_per_site=4),
        env=(("FEDGATE_RENDEZVOUS_TIMEOUT_S", "30"), *env),
    )


def start_centres(gateway: GatewayHandle, tmp_path: Path) -> list[AgentHandle]:
    # centre-b: 2 nodes of 4 (8 cards); centre-c: 1 node of 4, and the rendezvous point on this machine.
    b = start_test_agent(gateway, "centre-b", [{**POOL, "cards": 8, "offered": 8}], tmp_path / "b")
    c = start_test_agent(
        gateway,
        "centre-c",
        [{**POOL, "cards": 4, "offered": 4}],
        tmp_path / "c",
        rendezvous={"host": "127.0.0.1", "ports": "29700-29799"},
    )
    wait_for_capacity(gateway, "centre-b")
    wait_for_capacity(gateway, "centre-c")
    return [b, c]


def gateway_logs(gateway: GatewayHandle, job_id: str) -> dict[str, str]:
    """The job's output as the gateway streams it (for a gang: one part's), by site."""
    found: dict[str, str] = {}
    with gateway.client(gateway.pki.user(*ALICE)) as alice:
        for piece in alice.stream_job_logs(job_id, timeout=30):
            found[piece.site] = found.get(piece.site, "") + piece.data.decode()
    return found


def site_log(tmp_path: Path, site: str, job: Job) -> str:
    """A part's output as its site keeps it (the local backend's attempt folder)."""
    return (tmp_path / site / "jobs" / job.job_id / str(job.epoch) / "output.log").read_text()


def ended(gateway: GatewayHandle, job_id: str) -> Job:
    with gateway.client(gateway.pki.user(*ALICE)) as alice:
        eventually(lambda: alice.get_job(job_id).state.terminal, timeout=60, what="the gang to end")
        return alice.get_job(job_id)


def test_the_parts_of_a_cross_site_gang_agree_on_one_world(gateway: GatewayHandle, tmp_path: Path) -> None:
    agents = start_centres(gateway, tmp_path)
    try:
        with gateway.client(gateway.pki.user(*ALICE)) as alice:
            job = alice.create_job(gang_job())
        done = ended(gateway, job.job_id)
        assert done.state == JobState.SUCCEEDED, done.reasons
        assert sorted((p.site, p.cards, p.nodes) for p in done.placements) == [("centre-b", 8, 2), ("centre-c", 4, 0)]
        b_log, c_log = site_log(tmp_path, "b", done), site_log(tmp_path, "c", done)
        assert "node 1 of 3: world agreed" in "".join(gateway_logs(gateway, job.job_id).values())
        # centre-c offers the rendezvous point: its node holds rank 0; centre-b's two nodes ranks 1 and 2.
        assert "node 0 of 3: world agreed (ranks 0-2, 12 cards; master 127.0.0.1:297" in c_log
        assert "node 1 of 3: world agreed" in b_log and "node 2 of 3: world agreed" in b_log
    finally:
        for agent in agents:
            agent.stop()


def test_one_failing_rank_fails_the_gang_once_naming_its_node(gateway: GatewayHandle, tmp_path: Path) -> None:
    agents = start_centres(gateway, tmp_path)
    try:
        with gateway.client(gateway.pki.user(*ALICE)) as alice:
            job = alice.create_job(gang_job(env=(("FEDGATE_FAIL_RANK", "2"),)))
        done = ended(gateway, job.job_id)
        assert done.state == JobState.FAILED
        (failed,) = [e for e in gateway.running.core.store.events(job.job_id) if e.state == JobState.FAILED]
        # centre-b's second node holds the gang's node rank 2; nodes are named by their rank in the world.
        assert failed.message.startswith("gang part at centre-b failed: exited with code 3 on node 2")
        assert done.exit_code == 3
    finally:
        for agent in agents:
            agent.stop()
