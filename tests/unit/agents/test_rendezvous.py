"""The rendezvous contract's pure parts: the variables a node sees on each stack, a rendezvous point's ports,
the world the gateway states for each part of an attempt, the nodes a placement takes, and how the agent turns
a Launch into each node's devices and world (refusing a world that cannot be right)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from agents.backends.base import LaunchSpec
from agents.core.commands import Launch
from agents.core.config import AgentConfig
from agents.core.devices import DevicePool
from agents.core.launchspec import launch_spec
from agents.core.model import PoolSpec
from agents.errors import ConfigError, InsufficientCapacity, LaunchFailed
from fedgate.common import rendezvous
from fedgate.common.rendezvous import Rendezvous, RendezvousPoint
from gateway.jobs.model import Job, JobSpec, JobState, Placement, Resources
from gateway.placement.nodes import placed_nodes
from gateway.scheduler.rendezvous import world

NOW = datetime(2026, 12, 7, tzinfo=UTC)


# ---- the variables -------------------------------------------------------------------------------------------
def node_values(rank: str = "1") -> dict[str, str]:
    return {
        rendezvous.NNODES: "2",
        rendezvous.NODE_RANK: rank,
        rendezvous.MASTER_ADDR: "10.0.0.5",
        rendezvous.MASTER_PORT: "29517",
        rendezvous.WORLD_SIZE: "16",
        rendezvous.NPROC_PER_NODE: "8",
    }


def test_every_stack_gets_fedgate_and_torchrun_names() -> None:
    env = rendezvous.environment("cuda", node_values())
    assert env["FEDGATE_NNODES"] == env["NNODES"] == env["PET_NNODES"] == "2"
    assert env["FEDGATE_NODE_RANK"] == env["NODE_RANK"] == env["PET_NODE_RANK"] == "1"
    assert env["FEDGATE_MASTER_ADDR"] == env["MASTER_ADDR"] == env["PET_MASTER_ADDR"] == "10.0.0.5"
    assert env["FEDGATE_MASTER_PORT"] == env["MASTER_PORT"] == env["PET_MASTER_PORT"] == "29517"
    assert env["FEDGATE_WORLD_SIZE"] == "16"
    assert env["FEDGATE_NPROC_PER_NODE"] == env["PET_NPROC_PER_NODE"] == "8"
    # torchrun counts processes: WORLD_SIZE and RANK are its own to set, never fedgate's cards.
    assert "WORLD_SIZE" not in env and "RANK" not in env
    assert "RANK_SIZE" not in env


def test_ascend_gets_hccl_and_mindspore_names_too() -> None:
    env = rendezvous.environment("CANN", node_values())
    assert env["RANK_SIZE"] == env["MS_WORKER_NUM"] == "16"
    assert (env["MS_SCHED_HOST"], env["MS_SCHED_PORT"]) == ("10.0.0.5", "29517")
    assert env["MASTER_ADDR"] == "10.0.0.5"  # torch_npu's torchrun reads the torch names
    assert set(rendezvous.names("cann")) == set(env)
    assert set(rendezvous.names("cuda")) < set(env)


def test_an_unknown_key_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown rendezvous key"):
        rendezvous.environment("cuda", {"rank": "0"})


# ---- a rendezvous point --------------------------------------------------------------------------------------
def test_a_points_port_is_the_attempts_alone_and_within_its_range() -> None:
    point = RendezvousPoint("rdzv.example", 29500, 29509)
    ports = {point.port_for("job-1", epoch) for epoch in range(1, 200)}
    assert ports <= set(range(29500, 29510)) and len(ports) == 10  # spread over the range
    assert point.port_for("job-1", 3) == RendezvousPoint("rdzv.example", 29500, 29509).port_for("job-1", 3)
    assert RendezvousPoint("h", 7000, 7000).port_for("any", 1) == 7000


@pytest.mark.parametrize(
    ("point", "word"),
    [
        (RendezvousPoint("", 1, 2), "host"),
        (RendezvousPoint("a b", 1, 2), "host"),
        (RendezvousPoint("x" * 254, 1, 2), "host"),
        (RendezvousPoint("h", 0, 2), "ports"),
        (RendezvousPoint("h", 9, 2), "ports"),
        (RendezvousPoint("h", 1, 65536), "ports"),
    ],
)
def test_an_unusable_point_says_what_is_wrong(point: RendezvousPoint, word: str) -> None:
    assert word in point.problem()
    assert RendezvousPoint("login.centre-c.example").problem() == ""


# ---- the world the gateway states ----------------------------------------------------------------------------
def job_on(*parts: Placement, job_id: str = "job-1", epoch: int = 4) -> Job:
    spec = JobSpec("deepsea-ai", "llama-sft", Resources("ascend-910b", None, sum(p.cards for p in parts)), ())
    return Job(job_id, spec, JobState.DISPATCHED, NOW, NOW, epoch=epoch, placements=parts)


def test_a_one_site_job_is_its_own_world_and_its_site_names_the_master() -> None:
    part = Placement("centre-b", "ascend-910b", 16, nodes=2)
    assert world(job_on(part), part, lambda site: RendezvousPoint("rdzv.b")) == Rendezvous(2, 0, 16, "", 0)
    one = Placement("centre-b", "ascend-910b", 4)
    assert world(job_on(one), one, lambda site: None) == Rendezvous(1, 0, 4, "", 0)


def test_a_gangs_master_is_the_first_part_whose_site_offers_a_point() -> None:
    b = Placement("centre-b", "ascend-910b", 8)
    c = Placement("centre-c", "ascend-910b", 16, nodes=2)
    d = Placement("centre-d", "ascend-910b", 24, nodes=3)
    job = job_on(b, c, d)
    points = {"centre-c": RendezvousPoint("rdzv.c", 29500, 29599), "centre-d": RendezvousPoint("rdzv.d")}
    worlds = {p.site: world(job, p, points.get) for p in job.placements}
    assert {site: w.first_rank for site, w in worlds.items()} == {"centre-c": 0, "centre-b": 2, "centre-d": 3}
    assert {(w.nnodes, w.world_size, w.master_addr, w.master_port) for w in worlds.values()} == {
        (6, 48, "rdzv.c", points["centre-c"].port_for("job-1", 4))
    }


def test_a_gang_with_no_point_gets_ranks_but_no_common_master() -> None:
    b, c = Placement("centre-b", "ascend-910b", 8), Placement("centre-c", "ascend-910b", 8)
    job = job_on(b, c)
    assert [world(job, p, lambda site: None) for p in (b, c)] == [Rendezvous(2, 0, 16), Rendezvous(2, 1, 16)]


@pytest.mark.parametrize(
    ("cards", "stated", "per_node", "nodes"),
    [(16, 0, 8, 2), (8, 0, 8, 0), (4, 0, 8, 0), (12, 0, 8, 2), (8, 2, 8, 2), (8, 1, 8, 0), (6, 3, 0, 3), (6, 0, 0, 0)],
)
def test_the_nodes_a_placement_takes(cards: int, stated: int, per_node: int, nodes: int) -> None:
    assert placed_nodes(cards, stated, per_node) == nodes


# ---- the agent's side ----------------------------------------------------------------------------------------
def pool(offered: int = 32) -> DevicePool:
    return DevicePool(PoolSpec("ascend-910b", cards=32, offered=offered, cards_per_node=8, stack="cann"))


def test_a_stated_node_count_takes_whole_nodes_and_spreads_the_cards() -> None:
    devices = pool()
    devices.allocate(2)  # node 0 is partly used now
    assert devices.allocate(12, 2) == (8, 9, 10, 11, 12, 13, 16, 17, 18, 19, 20, 21)  # 6 on each of nodes 1, 2
    assert devices.node_room() == (1, 6)
    with pytest.raises(InsufficientCapacity, match="2 whole free nodes"):
        devices.allocate(16, 2)
    with pytest.raises(InsufficientCapacity, match="cannot be spread"):
        pool().allocate(18, 2)


def test_devices_split_by_node() -> None:
    assert pool().by_node((8, 9, 16, 17)) == ((8, 9), (16, 17))
    assert pool().by_node((1, 2)) == ((1, 2),)
    shapeless = DevicePool(PoolSpec("ascend-910b", cards=8, offered=8, cards_per_node=0))
    assert shapeless.by_node((0, 1, 2, 3), 2) == ((0, 1), (2, 3))
    assert shapeless.by_node((0, 1, 2, 3)) == ((0, 1, 2, 3),)


def launch(**extra: object) -> Launch:
    fields: dict[str, object] = {"job_id": "job-1", "epoch": 4, "attempt": 1, "accelerator_class": "ascend-910b"}
    return Launch(**{**fields, "cards": 16, "command": ("train",), **extra})  # type: ignore[arg-type]


def test_a_launch_becomes_one_spec_with_each_nodes_devices_and_variables() -> None:
    devices = pool()
    given = devices.allocate(16, 2)
    spec = launch_spec("centre-b", launch(nodes=2), devices, given, grace_s=5)
    assert spec.nodes == (tuple(range(8)), tuple(range(8, 16)))
    assert spec.rendezvous == Rendezvous(2, 0, 16)
    env = spec.node_environment(1, "node-a", 29511)
    assert (env["FEDGATE_NODE_RANK"], env["FEDGATE_MASTER_ADDR"], env["FEDGATE_MASTER_PORT"]) == (
        "1",
        "node-a",
        "29511",
    )
    assert (env["FEDGATE_NPROC_PER_NODE"], env["RANK_SIZE"]) == ("8", "16")
    single = launch_spec("centre-b", launch(cards=2), devices, devices.allocate(2), grace_s=5)
    assert single.node_devices == () and single.nodes == (single.devices,)
    assert single.node_environment(0, "127.0.0.1", 29500)["FEDGATE_NNODES"] == "1"


def test_the_gateways_master_wins_over_the_sites() -> None:
    gang = Rendezvous(nnodes=3, first_rank=1, world_size=24, master_addr="rdzv.c", master_port=29555)
    spec = LaunchSpec("centre-b", "job-1", 4, 1, "ascend-910b", "cann", ("train",), (0, 1), rendezvous=gang)
    values = spec.rendezvous_values(0, "127.0.0.1", 29500)
    assert values[rendezvous.MASTER_ADDR] == "rdzv.c" and values[rendezvous.MASTER_PORT] == "29555"
    assert (values[rendezvous.NODE_RANK], values[rendezvous.NNODES], values[rendezvous.WORLD_SIZE]) == ("1", "3", "24")


@pytest.mark.parametrize(
    ("world_", "problem"),
    [
        (Rendezvous(2, 0, 16, "h", 70000), "master port"),
        (Rendezvous(2, 0, 16, "h; rm -rf /", 1), "master address"),
        (Rendezvous(2, 1, 16), "beyond the world"),
    ],
)
def test_a_world_that_cannot_be_right_fails_the_launch(world_: Rendezvous, problem: str) -> None:
    devices = pool()
    with pytest.raises(LaunchFailed, match=problem):
        launch_spec("centre-b", launch(nodes=2, rendezvous=world_), devices, devices.allocate(16, 2), grace_s=5)


def test_the_agent_config_names_its_rendezvous_point(make_config: Callable[..., AgentConfig]) -> None:
    config = make_config(extra="rendezvous: {host: login.centre-a.example, ports: '29600-29699'}\n")
    assert config.rendezvous == RendezvousPoint("login.centre-a.example", 29600, 29699)
    assert make_config().rendezvous is None
    with pytest.raises(ConfigError, match="ports"):
        make_config(extra="rendezvous: {host: h, ports: '29699-29600'}\n")
    with pytest.raises(ConfigError, match="range like"):
        make_config(extra="rendezvous: {host: h, ports: lots}\n")
