"""A two-node job through a real gateway and a real site agent on the local backend (real process groups, jobs as
the unprivileged job user): both nodes run the example two-node world (examples/jobs/two-node/rendezvous.py) on
their own devices and agree on it; one node's failure fails the job once, naming the node, and ends the other;
a cancel leaves no process of either node; an agent killed with -9 and started again adopts both nodes and the
job still ends once."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.jobs.model import Job, JobSpec, JobState, Resources, StackRun
from gateway.transport.client import FederationClient
from tests.integration.harness import AgentHandle, AgentProcess, GatewayHandle, start_test_agent, wait_for_capacity
from tests.jobs import shared_folder
from tests.waiting import alive, eventually

SITE = "centre-a"
CARDS_PER_NODE = 2
POOLS = [{"class": "ascend-910b", "cards": 2 * CARDS_PER_NODE, "offered": 2 * CARDS_PER_NODE, "cards_per_node": 2}]
EXAMPLE = Path(__file__).parents[2] / "examples" / "jobs" / "two-node" / "rendezvous.py"
# Each node says which devices it was given and writes its pid, then runs the example's world (its main()); with
# a release prefix (argv[1]) it then waits for `<prefix>-<rank>` and exits with the code argv[2:] give its rank
# as `rank=code` (0 if none), as a training that goes on after the rendezvous would.
NODE = (
    "import os, sys, time\n"
    "rank = os.environ['FEDGATE_NODE_RANK']\n"
    "print(f\"node {rank} devices {os.environ['FEDGATE_DEVICES']} {os.environ['ASCEND_RT_VISIBLE_DEVICES']}\","
    " flush=True)\n"
    "open('pid.partial', 'w').write(str(os.getpid())); os.replace('pid.partial', 'pid')\n"
    "example = {'__name__': 'rendezvous'}\n"
    f"exec(compile({EXAMPLE.read_text()!r}, 'rendezvous.py', 'exec'), example)\n"
    "code = example['main']()\n"
    "if code == 0 and len(sys.argv) > 1:\n"
    "    while not os.path.exists(f'{sys.argv[1]}-{rank}'):\n"
    "        time.sleep(0.05)\n"
    "    code = int(dict(arg.split('=') for arg in sys.argv[2:]).get(rank, 0))\n"
    "sys.exit(code)\n"
)


def two_node_job(*args: str, env: tuple[tuple[str, str], ...] = ()) -> JobSpec:
    """Two nodes' worth of cards: the gateway places it as two whole nodes."""
    command = ("python3", "-c", NODE, *args)
    resources = Resources("ascend-910b", None, 2 * CARDS_PER_NODE)
    return JobSpec("deepsea-ai", "llama-sft", resources, (StackRun("cann", "", command),), env=env)


def node_folders(jobs: Path, job_id: str, epoch: int = 1) -> list[Path]:
    return [jobs / job_id / str(epoch) / f"node-{rank}" for rank in (0, 1)]


def groups_of(folders: list[Path]) -> list[int]:
    """Every node's process group (its wrapper's pid, from the leader file the backend wrote)."""
    return [int(json.loads((folder / "leader.json").read_text())["pid"]) for folder in folders]


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def node_pids(folders: list[Path]) -> list[int]:
    return [int((folder / "pid").read_text()) for folder in folders]


def started(folders: list[Path]) -> bool:
    return all((folder / "pid").exists() for folder in folders)


def failed_events(gateway: GatewayHandle, job_id: str) -> list[str]:
    return [e.message for e in gateway.running.core.store.events(job_id) if e.state == JobState.FAILED]


@pytest.fixture
def site(gateway: GatewayHandle, tmp_path: Path) -> Iterator[AgentHandle]:
    agent = start_test_agent(gateway, SITE, POOLS, tmp_path / "agent", cancel_grace_s=1)
    wait_for_capacity(gateway, SITE)
    yield agent
    agent.stop()


@pytest.fixture
def alice(gateway: GatewayHandle) -> Iterator[FederationClient]:
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as client:
        yield client


@pytest.fixture
def release(tmp_path: Path) -> Path:
    return shared_folder(tmp_path / "shared") / "release"


def run_to_end(client: FederationClient, spec: JobSpec) -> Job:
    job = client.create_job(spec)
    eventually(lambda: client.get_job(job.job_id).state.terminal, timeout=60, what=f"job {job.job_id} to end")
    return client.get_job(job.job_id)


def test_a_two_node_job_agrees_its_world_on_two_nodes_each_on_its_own_devices(
    gateway: GatewayHandle, site: AgentHandle, alice: FederationClient
) -> None:
    job = run_to_end(alice, two_node_job())
    output = b"".join(p.data for p in alice.stream_job_logs(job.job_id, timeout=20)).decode()
    assert job.state == JobState.SUCCEEDED, output
    port = re.search(r"master 127\.0\.0\.1:(\d+)\)", output)
    assert port is not None, output
    for rank in (0, 1):
        assert f"node {rank} of 2: world agreed (ranks 0-1, 4 cards; master 127.0.0.1:{port[1]})" in output
    seen = re.findall(r"^node (\d) devices (\S+) (\S+)$", output, re.MULTILINE)
    assert all(fedgate == ascend for _, fedgate, ascend in seen), output  # the stack's variable says the same
    devices = {rank: fedgate for rank, fedgate, _ in seen}
    assert sorted(devices) == ["0", "1"], output
    assert set(devices["0"].split(",")).isdisjoint(devices["1"].split(","))
    assert all(len(d.split(",")) == CARDS_PER_NODE for d in devices.values())
    folders = node_folders(site.workdir / "jobs", job.job_id)
    assert not any(group_alive(group) for group in groups_of(folders))


def test_one_nodes_failure_fails_the_job_once_naming_the_node_and_ends_the_other(
    gateway: GatewayHandle, site: AgentHandle, alice: FederationClient, release: Path
) -> None:
    # Node 1 fails right after the rendezvous (FEDGATE_FAIL_RANK); node 0 would train on for good.
    job = run_to_end(alice, two_node_job(str(release), env=(("FEDGATE_FAIL_RANK", "1"),)))
    assert (job.state, job.exit_code, job.attempt) == (JobState.FAILED, 3, 1)
    (message,) = failed_events(gateway, job.job_id)
    assert "node 1" in message, message
    folders = node_folders(site.workdir / "jobs", job.job_id)
    assert not any(group_alive(group) for group in groups_of(folders))
    assert not any(alive(pid) for pid in node_pids(folders))


def test_a_cancel_leaves_no_process_of_either_node(
    gateway: GatewayHandle, site: AgentHandle, alice: FederationClient, release: Path
) -> None:
    job = alice.create_job(two_node_job(str(release)))
    folders = node_folders(site.workdir / "jobs", job.job_id)
    eventually(lambda: started(folders), timeout=30, what="both nodes to start")
    groups, pids = groups_of(folders), node_pids(folders)
    assert all(group_alive(group) for group in groups)
    alice.cancel_job(job.job_id, reason="enough")
    eventually(lambda: alice.get_job(job.job_id).state == JobState.CANCELLED, what="the job to be cancelled")
    eventually(lambda: not any(group_alive(group) for group in groups), what="both nodes' groups to be gone")
    assert not any(alive(pid) for pid in pids)


def connected(gateway: GatewayHandle) -> bool:
    with gateway.client(gateway.pki.admin()) as admin:
        return any(view.name == SITE and view.connected for view in admin.list_sites())


class Site(AgentProcess):
    """centre-a's agent as its own process, which the test kills with -9 and starts again."""

    def __init__(self, gateway: GatewayHandle, root: Path) -> None:
        super().__init__(gateway, root, SITE, POOLS, report_interval_s=0.5)


@pytest.fixture
def site_process(gateway: GatewayHandle, tmp_path: Path) -> Iterator[Site]:
    made = Site(gateway, tmp_path / "agent-process")
    yield made
    if made.process is not None and made.process.poll() is None:
        made.kill()
    for path in made.jobs.glob("*/*/node-*/leader.json"):  # the nodes outlive a killed agent: end them here
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError, KeyError):
            os.killpg(int(json.loads(path.read_text())["pid"]), signal.SIGKILL)


def test_a_killed_agent_adopts_both_nodes_and_the_job_ends_once(
    gateway: GatewayHandle, site_process: Site, alice: FederationClient, release: Path
) -> None:
    site_process.start()
    wait_for_capacity(gateway, SITE)
    job = alice.create_job(two_node_job(str(release), "1=4"))
    folders = node_folders(site_process.jobs, job.job_id)
    eventually(lambda: started(folders), timeout=30, what="both nodes to start")
    eventually(lambda: alice.get_job(job.job_id).state == JobState.RUNNING, what="the job to run")
    groups, pids = groups_of(folders), node_pids(folders)

    site_process.kill()  # kill -9: the nodes run on, nobody watches them
    assert all(group_alive(group) for group in groups) and all(alive(pid) for pid in pids)
    eventually(lambda: not connected(gateway), what="the gateway to see the agent gone")
    site_process.start()
    eventually(lambda: connected(gateway), what="the agent to come back (it restores its journal first)")
    assert alive(pids[0]) and alive(pids[1])  # adopted, not swept
    assert alice.get_job(job.job_id).state == JobState.RUNNING

    # Node 1 fails: the restarted agent follows both groups, so it ends node 0 and reports the job once.
    Path(f"{release}-1").touch()
    eventually(lambda: alice.get_job(job.job_id).state.terminal, timeout=30, what="the job to end")
    ended = alice.get_job(job.job_id)
    assert (ended.state, ended.exit_code, ended.epoch) == (JobState.FAILED, 4, 1)
    (message,) = failed_events(gateway, job.job_id)
    assert "node 1" in message, message
    assert JobState.LOST not in [e.state for e in gateway.running.core.store.events(job.job_id)]
    eventually(lambda: not any(group_alive(group) for group in groups), what="both nodes' groups to be gone")
    assert not any(alive(pid) for pid in pids)
