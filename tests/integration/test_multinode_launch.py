"""What the gateway tells sites about a multi-node attempt, read off the wire by hand-driven agents (the generated
stubs over real mTLS, no fedgate agent code): a job of more than one node's cards is launched on whole nodes
with its world (nodes, ranks, cards), a stated shape is kept, a cross-site gang's parts share one master at the
rendezvous point one of their sites advertised and hold consecutive ranks, and a Hello naming an unusable
rendezvous point is refused clearly."""

from __future__ import annotations

from dataclasses import replace

import grpc
import pytest

from fedgate.v1 import job_pb2, site_pb2
from gateway.jobs.model import JobSpec, Resources, StackRun, Topology
from tests.integration.harness import GatewayHandle
from tests.security.support import ALICE, SiteStream, job_update
from tests.waiting import eventually

RUN = (StackRun("cann", "", ("python3", "-c", "print('hi')")),)


def ascend_job(cards: int, nodes: int = 0, topology: Topology | None = None) -> JobSpec:
    spec = JobSpec(
        tenant="deepsea-ai", project="llama-sft", resources=Resources("ascend-910b", None, cards, nodes), runs=RUN
    )
    return replace(spec, topology=topology) if topology is not None else spec


def connect(
    gateway: GatewayHandle, site: str, nodes: int, rendezvous: site_pb2.RendezvousPoint | None = None
) -> SiteStream:
    """A site of `nodes` free whole nodes of 8 Ascend cards that said Hello (with its rendezvous point)."""
    stream = SiteStream(gateway, gateway.pki.site(site))
    stream.send(hello=site_pb2.Hello(site=site, agent_version="multinode-test", rendezvous=rendezvous))
    assert stream.next().WhichOneof("kind") == "welcome"
    report(stream, nodes, nodes)
    return stream


def report(stream: SiteStream, nodes: int, free_nodes: int) -> None:
    """The site's capacity: `nodes` nodes of 8 Ascend cards, `free_nodes` of them wholly free, none partly."""
    pool = site_pb2.Pool(
        accelerator_class="ascend-910b",
        total=nodes * 8,
        offered=nodes * 8,
        free=free_nodes * 8,
        cards_per_node=8,
        free_nodes=free_nodes,
        largest_partial_free=0,
    )
    stream.send(capacity=site_pb2.CapacityReport(full=True, pools=[pool]))


def wait_for_pools(gateway: GatewayHandle, *sites: str) -> None:
    with gateway.client(gateway.pki.admin()) as admin:
        eventually(lambda: {s.name for s in admin.list_sites() if s.pools} >= set(sites), what="capacity reports")


def test_a_job_of_two_nodes_cards_is_launched_on_two_whole_nodes_with_its_world(gateway: GatewayHandle) -> None:
    stream = connect(gateway, "centre-b", nodes=3)
    try:
        wait_for_pools(gateway, "centre-b")
        with gateway.client(gateway.pki.user(*ALICE)) as alice:
            job = alice.create_job(ascend_job(16))
            launch = stream.next_of("launch").launch
            assert (launch.job_id, launch.cards, launch.nodes) == (job.job_id, 16, 2)
            world = launch.rendezvous
            assert (world.nnodes, world.first_rank, world.world_size) == (2, 0, 16)
            assert (world.master_addr, world.master_port) == ("", 0)  # a one-site job: the site names its master
            (placement,) = alice.get_job(job.job_id).placements
            assert placement.nodes == 2
            running = job_update(job.job_id, launch.epoch, job_pb2.JOB_STATE_RUNNING, 1, device_indices=range(16))
            stream.send(job_update=running)
            eventually(lambda: alice.get_job(job.job_id).state.value == "RUNNING", what="the job running")
            (placement,) = alice.get_job(job.job_id).placements  # the devices reported keep the nodes
            assert (placement.nodes, len(placement.device_indices)) == (2, 16)
            report(stream, 3, 1)  # as an agent does after a launch: which node is left whole
            small = alice.create_job(ascend_job(4))
            launch = stream.next_of("launch").launch
            assert (launch.job_id, launch.nodes, launch.rendezvous.nnodes) == (small.job_id, 0, 1)
    finally:
        stream.close()


def test_a_stated_shape_is_kept_four_cards_on_each_of_two_nodes(gateway: GatewayHandle) -> None:
    stream = connect(gateway, "centre-b", nodes=2)
    try:
        wait_for_pools(gateway, "centre-b")
        with gateway.client(gateway.pki.user(*ALICE)) as alice:
            alice.create_job(ascend_job(8, nodes=2))
            launch = stream.next_of("launch").launch
            assert (launch.cards, launch.nodes, launch.rendezvous.nnodes, launch.rendezvous.world_size) == (8, 2, 2, 8)
    finally:
        stream.close()


def test_a_cross_site_gang_shares_one_master_and_holds_consecutive_ranks(gateway: GatewayHandle) -> None:
    point = site_pb2.RendezvousPoint(host="rdzv.centre-c.example", first_port=29500, last_port=29599)
    # centre-b sorts first, but only centre-c offers a rendezvous point: its part holds ranks 0 and 1.
    b = connect(gateway, "centre-b", nodes=1)
    c = connect(gateway, "centre-c", nodes=2, rendezvous=point)
    try:
        wait_for_pools(gateway, "centre-b", "centre-c")
        with gateway.client(gateway.pki.user(*ALICE)) as alice:
            job = alice.create_job(ascend_job(24, topology=Topology(max_sites=2, min_cards_per_site=8)))
            launches = {}
            held = {}
            for name, stream in (("centre-b", b), ("centre-c", c)):
                reserve = held[name] = stream.next_of("reserve").reserve
                stream.send(reserve_reply=site_pb2.ReserveReply(reservation_id=reserve.reservation_id, accepted=True))
            # Each hold names the nodes its part's Launch will, so the site holds whole nodes.
            assert {name: (r.cards, r.nodes) for name, r in held.items()} == {"centre-b": (8, 0), "centre-c": (16, 2)}
            for name, stream in (("centre-b", b), ("centre-c", c)):
                launches[name] = stream.next_of("launch").launch
            b_world, c_world = launches["centre-b"].rendezvous, launches["centre-c"].rendezvous
            assert (launches["centre-b"].nodes, launches["centre-c"].nodes) == (0, 2)
            assert (b_world.nnodes, c_world.nnodes) == (3, 3)
            assert (b_world.world_size, c_world.world_size) == (24, 24)
            assert (c_world.first_rank, b_world.first_rank) == (0, 2)
            assert b_world.master_addr == c_world.master_addr == "rdzv.centre-c.example"
            assert b_world.master_port == c_world.master_port
            assert 29500 <= c_world.master_port <= 29599
            assert launches["centre-b"].epoch == launches["centre-c"].epoch
            for seq, (name, stream) in enumerate((("centre-b", b), ("centre-c", c)), start=1):
                stream.send(job_update=job_update(job.job_id, launches[name].epoch, job_pb2.JOB_STATE_RUNNING, seq))
            eventually(lambda: alice.get_job(job.job_id).state.value == "RUNNING", what="the gang running")
            assert sorted(p.nodes for p in alice.get_job(job.job_id).placements) == [0, 2]
    finally:
        b.close()
        c.close()


@pytest.mark.parametrize(
    "point",
    [
        site_pb2.RendezvousPoint(host="", first_port=29500, last_port=29501),
        site_pb2.RendezvousPoint(host="a b; rm -rf /", first_port=29500, last_port=29501),
        site_pb2.RendezvousPoint(host="rdzv.example", first_port=29600, last_port=29500),
        site_pb2.RendezvousPoint(host="rdzv.example", first_port=0, last_port=70000),
    ],
)
def test_a_hello_with_an_unusable_rendezvous_point_is_refused_naming_the_fix(
    gateway: GatewayHandle, point: site_pb2.RendezvousPoint
) -> None:
    stream = SiteStream(gateway, gateway.pki.site("centre-b"))
    try:
        stream.send(hello=site_pb2.Hello(site="centre-b", agent_version="multinode-test", rendezvous=point))
        with pytest.raises(grpc.RpcError) as refused:
            stream.next()
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "rendezvous" in (refused.value.details() or "")
    finally:
        stream.close()
