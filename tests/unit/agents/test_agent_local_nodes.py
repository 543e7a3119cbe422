"""A multi-node attempt on the local backend, with real process groups and no gateway: one group per node, each on
its own devices with its rendezvous variables, in its own folder; the first node to fail ends the others and is
named once; cancel reaches every group; after a restart every node is adopted or judged (a node that failed
while the agent was away ends the rest, one that left no trace makes the attempt lost); sweep finds every
node's leader."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from agents.backends.base import LaunchSpec
from agents.backends.local import LocalBackend, LocalHandle
from agents.backends.localproc import group_has_members
from agents.errors import AttemptLost, LaunchFailed
from fedgate.common.rendezvous import Rendezvous
from tests.jobs import JOB_PYTHON, shared_folder
from tests.waiting import alive, eventually_async

from .conftest import backend_in

PY = JOB_PYTHON
EXAMPLE = Path(__file__).parents[3] / "examples" / "jobs" / "two-node" / "rendezvous.py"
# Says which node it is and what it was given, then runs the example two-node world (as its own __main__).
RENDEZVOUS = (
    "import json, os\n"
    "names = ('FEDGATE_NODE_RANK', 'FEDGATE_DEVICES', 'CUDA_VISIBLE_DEVICES', 'FEDGATE_NNODES', 'FEDGATE_WORLD_SIZE',"
    " 'FEDGATE_MASTER_ADDR', 'FEDGATE_MASTER_PORT', 'MASTER_PORT', 'NODE_RANK', 'HOME')\n"
    "print('seen ' + json.dumps({n: os.environ.get(n) for n in names} | {'cwd': os.getcwd()}), flush=True)\n"
    f"exec(compile({EXAMPLE.read_text()!r}, 'rendezvous.py', 'exec'))\n"
)
# Node r writes its pid, then waits for the file `<argv[1]>-<r>` and exits with the code argv[2:] give it as
# `r=code` (0 if none); IGNORE_TERM=1 in its environment makes it ignore SIGTERM.
HOLD = (
    "import os, signal, sys, time\n"
    "rank = os.environ['FEDGATE_NODE_RANK']\n"
    "if os.environ.get('IGNORE_TERM'): signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "open('pid.partial', 'w').write(str(os.getpid())); os.replace('pid.partial', 'pid')\n"
    "codes = dict(arg.split('=') for arg in sys.argv[2:])\n"
    "while not os.path.exists(f'{sys.argv[1]}-{rank}'):\n"
    "    time.sleep(0.02)\n"
    "sys.exit(int(codes.get(rank, 0)))\n"
)


def spec(job: str, *command: str, env: dict[str, str] | None = None, world: Rendezvous | None = None) -> LaunchSpec:
    """Two nodes of two cards each (devices 0,1 and 2,3)."""
    return LaunchSpec(
        "centre-a",
        job,
        1,
        1,
        "nvidia-h100",
        "cuda",
        command,
        (0, 1, 2, 3),
        env={"FEDGATE_PREEMPT_GRACE_S": "0.3", **(env or {})},
        node_devices=((0, 1), (2, 3)),
        rendezvous=world or Rendezvous.alone(2, 4),
    )


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """The prefix of the release files of HOLD's nodes, in a folder the job user may read."""
    return shared_folder(tmp_path / "shared") / "release"


async def holding(backend: LocalBackend, groups: list[int], job: str, *args: str, **env: str) -> LocalHandle:
    """A started two-node HOLD attempt, once both nodes wrote their pid."""
    handle = await backend.launch(spec(job, PY, "-c", HOLD, *args, env=env))
    groups.extend(node.group for node in handle.nodes)
    for node in handle.nodes:
        pid = node.directory / "pid"
        await eventually_async(lambda p=pid: p.exists(), what=f"node {node.rank} to start")  # type: ignore[misc]
    return handle


def let_go(release: Path, rank: int) -> None:
    """Release HOLD's node `rank`."""
    Path(f"{release}-{rank}").touch()


def pids(handle: LocalHandle) -> list[int]:
    return [int((node.directory / "pid").read_text()) for node in handle.nodes]


def returncode(folder: Path) -> int:
    """What node's wrapper recorded of its command (negative: killed by that signal)."""
    return int(json.loads((folder / "exit_code").read_text())["returncode"])


async def test_each_node_runs_in_its_own_group_on_its_own_devices_and_the_world_agrees(
    tmp_path: Path, groups: list[int]
) -> None:
    backend = backend_in(tmp_path / "work")
    handle = await backend.launch(spec("j1", PY, "-c", RENDEZVOUS))
    groups.extend(node.group for node in handle.nodes)
    status = await asyncio.wait_for(backend.wait(handle), 30)
    assert (status.succeeded, status.node) == (True, "")
    attempt = tmp_path / "work" / "j1" / "1"
    output = (attempt / "output.log").read_text()
    reports = [json.loads(line.removeprefix("seen ")) for line in output.splitlines() if line.startswith("seen ")]
    seen = {int(entry["FEDGATE_NODE_RANK"]): entry for entry in reports}
    port = seen[0]["FEDGATE_MASTER_PORT"]
    for rank, devices in ((0, "0,1"), (1, "2,3")):
        folder = attempt / f"node-{rank}"
        assert seen[rank] == {
            "FEDGATE_NODE_RANK": str(rank),
            "NODE_RANK": str(rank),
            "FEDGATE_DEVICES": devices,
            "CUDA_VISIBLE_DEVICES": devices,
            "FEDGATE_NNODES": "2",
            "FEDGATE_WORLD_SIZE": "4",
            "FEDGATE_MASTER_ADDR": "127.0.0.1",
            "FEDGATE_MASTER_PORT": port,
            "MASTER_PORT": port,
            "HOME": str(folder),
            "cwd": str(folder),
        }
        assert f"node {rank} of 2: world agreed (ranks 0-1, 4 cards; master 127.0.0.1:{port})" in output
        assert returncode(folder) == 0 and (folder / "leader.json").exists()
    assert len({node.group for node in handle.nodes}) == 2
    assert not (attempt / "exit_code").exists()
    record = json.loads(json.dumps(backend.journal_record(handle)))  # as the journal keeps it
    assert [entry["rank"] for entry in record["nodes"]] == [0, 1]
    assert [entry["pid"] for entry in record["nodes"]] == [node.group for node in handle.nodes]
    assert await backend.read_output(handle, 0, 1 << 20) == output.encode()


async def test_the_gateways_world_and_master_win_and_name_the_nodes_by_their_rank(
    tmp_path: Path, groups: list[int]
) -> None:
    # The second part of a cross-site gang: nodes 2 and 3 of four, rank 0's master chosen by the gateway.
    world = Rendezvous(nnodes=4, first_rank=2, world_size=8, master_addr="rank0.centre-b.example", master_port=29517)
    script = "import os; print(os.environ['FEDGATE_NODE_RANK'], os.environ['MASTER_ADDR'], os.environ['MASTER_PORT'])"
    backend = backend_in(tmp_path / "work")
    handle = await backend.launch(spec("j1", PY, "-c", script, world=world))
    groups.extend(node.group for node in handle.nodes)
    assert (await asyncio.wait_for(backend.wait(handle), 10)).succeeded
    lines = sorted(handle.log_path.read_text().splitlines())
    assert lines == ["2 rank0.centre-b.example 29517", "3 rank0.centre-b.example 29517"]
    assert sorted(p.name for p in handle.directory.glob("node-*")) == ["node-2", "node-3"]


async def test_the_first_node_to_fail_stops_the_others_and_is_named_once(
    tmp_path: Path, groups: list[int], release: Path
) -> None:
    backend = backend_in(tmp_path / "work")
    handle = await holding(backend, groups, "j1", str(release), "1=3")
    waiting = asyncio.ensure_future(backend.wait(handle))
    await asyncio.sleep(0)
    assert not waiting.done()
    let_go(release, 1)  # node 1 fails; node 0 would wait for good
    status = await asyncio.wait_for(waiting, 10)
    assert (status.exit_code, status.node, status.describe()) == (3, "node 1", "exited with code 3 on node 1")
    assert not any(alive(pid) for pid in pids(handle))
    assert returncode(handle.nodes[0].directory) == -signal.SIGTERM  # stopped politely first


async def test_a_node_that_ignores_sigterm_is_killed_after_the_grace(
    tmp_path: Path, groups: list[int], release: Path
) -> None:
    backend = backend_in(tmp_path / "work")
    handle = await holding(backend, groups, "j1", str(release), "0=7", IGNORE_TERM="1")
    let_go(release, 0)
    status = await asyncio.wait_for(backend.wait(handle), 10)  # the grace is 0.3 s (FEDGATE_PREEMPT_GRACE_S)
    assert (status.exit_code, status.node) == (7, "node 0")
    assert not any(alive(pid) for pid in pids(handle))
    assert not (handle.nodes[1].directory / "exit_code").exists()  # killed with its wrapper


async def test_success_only_when_every_node_exited_zero(tmp_path: Path, groups: list[int], release: Path) -> None:
    backend = backend_in(tmp_path / "work")
    handle = await holding(backend, groups, "j1", str(release))
    waiting = asyncio.ensure_future(backend.wait(handle))
    let_go(release, 0)  # node 0 is done; the attempt is not
    await eventually_async((handle.nodes[0].directory / "exit_code").exists, what="node 0's end")
    assert not waiting.done() and alive(pids(handle)[1])
    let_go(release, 1)
    assert (await asyncio.wait_for(waiting, 10)).succeeded


async def test_cancel_reaches_every_node(tmp_path: Path, groups: list[int], release: Path) -> None:
    backend = backend_in(tmp_path / "work")
    handle = await holding(backend, groups, "j1", str(release))
    waiting = asyncio.ensure_future(backend.wait(handle))
    await asyncio.wait_for(backend.cancel(handle, grace_s=2.0), 10)
    assert not any(alive(pid) for pid in pids(handle)) and not any(alive(node.group) for node in handle.nodes)
    status = await asyncio.wait_for(waiting, 5)
    assert status.exit_code == 128 + signal.SIGTERM and status.node in ("node 0", "node 1")
    await asyncio.wait_for(backend.cancel(handle, grace_s=0.1), 5)  # again, on an ended attempt: harmless


async def test_a_restarted_agent_adopts_every_node_and_a_later_failure_still_ends_the_others(
    tmp_path: Path, groups: list[int], release: Path
) -> None:
    first = backend_in(tmp_path / "work")
    handle = await holding(first, groups, "j1", str(release), "0=5")
    restarted = backend_in(tmp_path / "work")  # the same site after its agent was killed
    adopted = await restarted.adopt(spec("j1", PY), first.journal_record(handle))
    assert adopted is not None
    assert [(n.group, n.process) for n in adopted.nodes] == [(n.group, None) for n in handle.nodes]
    waiting = asyncio.ensure_future(restarted.wait(adopted))
    await asyncio.sleep(0)
    assert not waiting.done()
    let_go(release, 0)
    status = await asyncio.wait_for(waiting, 10)
    assert (status.exit_code, status.node) == (5, "node 0")
    assert not any(alive(pid) for pid in pids(handle))


async def test_a_node_that_failed_while_the_agent_was_away_ends_the_rest_on_adoption(
    tmp_path: Path, groups: list[int], release: Path
) -> None:
    first = backend_in(tmp_path / "work")
    handle = await holding(first, groups, "j1", str(release), "1=4")
    let_go(release, 1)  # nobody watches: node 0 runs on beside its failed peer
    await eventually_async((handle.nodes[1].directory / "exit_code").exists, what="node 1's exit file")
    restarted = backend_in(tmp_path / "work")
    adopted = await restarted.adopt(spec("j1", PY), first.journal_record(handle))
    assert adopted is not None
    status = await asyncio.wait_for(restarted.wait(adopted), 10)
    assert (status.exit_code, status.node) == (4, "node 1")
    assert not any(alive(pid) for pid in pids(handle))


async def test_a_node_that_left_no_trace_makes_the_attempt_lost_and_the_others_are_stopped(
    tmp_path: Path, groups: list[int], release: Path
) -> None:
    first = backend_in(tmp_path / "work")
    handle = await holding(first, groups, "j1", str(release))
    os.killpg(handle.nodes[1].group, signal.SIGKILL)  # node 1 with its wrapper: no exit file
    await eventually_async(lambda: not alive(pids(handle)[1]), what="node 1 to die")
    restarted = backend_in(tmp_path / "work")
    adopted = await restarted.adopt(spec("j1", PY), first.journal_record(handle))
    assert adopted is not None
    with pytest.raises(AttemptLost, match=r"^node 1: its process group"):
        await asyncio.wait_for(restarted.wait(adopted), 10)
    assert not alive(pids(handle)[0])


async def test_an_attempt_with_no_node_left_is_not_adopted(tmp_path: Path, groups: list[int], release: Path) -> None:
    first = backend_in(tmp_path / "work")
    handle = await holding(first, groups, "j1", str(release))
    for node in handle.nodes:
        os.killpg(node.group, signal.SIGKILL)
    # The commands and their process groups (the wrappers die a moment later and are reaped by this process):
    # adoption looks at the groups, so a wrapper not yet gone would still count as a node left.
    await eventually_async(
        lambda: (
            not any(alive(pid) for pid in pids(handle)) and not any(group_has_members(n.group) for n in handle.nodes)
        ),
        what="both nodes and their groups to end",
    )
    assert await backend_in(tmp_path / "work").adopt(spec("j1", PY), first.journal_record(handle)) is None


async def test_sweep_kills_every_node_of_an_attempt_never_journaled(
    tmp_path: Path, groups: list[int], release: Path
) -> None:
    first = backend_in(tmp_path / "work")
    journaled = await holding(first, groups, "j1", str(release))
    unjournaled = await holding(first, groups, "j2", str(release))
    await backend_in(tmp_path / "work").sweep({("j1", 1)})
    assert not any(alive(node.group) for node in unjournaled.nodes)
    await eventually_async(lambda: not any(alive(pid) for pid in pids(unjournaled)), what="j2's nodes to die")
    assert all(alive(pid) for pid in pids(journaled))


async def test_a_node_folder_that_is_a_link_is_refused_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    attempt = tmp_path / "work" / "j1" / "1"
    attempt.mkdir(parents=True)
    (attempt / "node-1").symlink_to(elsewhere)  # left by a job of the job user in its own folder
    with pytest.raises(LaunchFailed, match="node-1 is a link"):
        await backend_in(tmp_path / "work").launch(spec("j1", PY, "-c", "pass"))
    assert list(elsewhere.iterdir()) == [] and elsewhere.stat().st_uid == os.geteuid()
