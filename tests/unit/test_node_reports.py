"""Node shapes end to end short of a server: what the agent reports per pool from the device indices in use,
what the gateway accepts of such a report, how a job states its shape (job file, validator, proto), and the
wire between them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agents.core.devices import DevicePool
from agents.core.model import PoolSpec
from agents.core.offers import pool_capacities
from agents.policy.terms import OfferWindow, SitePolicy
from fedgate.common import wire
from gateway.errors import ConfigError, InvalidArgument
from gateway.jobs.model import JobSpec, Resources, StackRun
from gateway.jobs.specfile import parse_job_spec, spec_to_dict
from gateway.jobs.validate import spec_problem
from gateway.sites.model import Pool, check_capacity
from gateway.transport import convert

NOW = datetime(2026, 3, 4, 10, 30, tzinfo=UTC)


# -- the agent -------------------------------------------------------------------------------------------------


def test_the_agent_reports_whole_free_nodes_and_the_largest_partly_free_one() -> None:
    pool = DevicePool(PoolSpec("nvidia-h100", cards=32, offered=32, cards_per_node=8))
    assert pool.node_room() == (4, 0)
    pool.allocate(3)  # node 0: 5 left
    pool.allocate(6)  # node 1: 2 left (node 0's 5 are too few)
    assert pool.node_room() == (2, 5)
    [report] = pool_capacities(SitePolicy(), [pool], NOW, draining=False)
    assert (report.free, report.free_nodes, report.largest_partial_free) == (23, 2, 5)
    [drained] = pool_capacities(SitePolicy(), [pool], NOW, draining=True)
    assert (drained.free, drained.free_nodes, drained.largest_partial_free) == (0, 0, 0)


def test_a_node_the_offer_cuts_short_is_never_whole() -> None:
    pool = DevicePool(PoolSpec("ascend-910b", cards=16, offered=12, cards_per_node=8))
    assert pool.node_room() == (1, 4)  # devices 8..11 offered of node 1's 8


def test_a_job_of_several_nodes_gets_whole_free_nodes() -> None:
    pool = DevicePool(PoolSpec("nvidia-h100", cards=32, offered=32, cards_per_node=8))
    pool.allocate(2)  # node 0 partly used
    assert pool.allocate(16) == tuple(range(8, 24))  # nodes 1 and 2, not node 0's leftovers
    assert pool.node_room() == (1, 6)


def test_a_pool_without_a_node_shape_reports_no_nodes() -> None:
    pool = DevicePool(PoolSpec("nvidia-h100", cards=4, offered=4, cards_per_node=0))
    [report] = pool_capacities(SitePolicy(), [pool], NOW, draining=False)
    assert report.free_nodes is None
    assert not wire.pool_to_proto(report).HasField("free_nodes")


# -- the gateway's bounds --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pool", "words"),
    [
        (Pool("nvidia-h100", 32, 32, 15, 8, free_nodes=2), "free nodes cannot hold more than the free cards"),
        (Pool("nvidia-h100", 32, 32, 16, 8, free_nodes=1, largest_partial_free=8), "fewer than its 8 cards"),
        (Pool("nvidia-h100", 32, 32, 4, 8, free_nodes=0, largest_partial_free=5), "cannot hold more"),
        (Pool("nvidia-h100", 32, 32, 16, 0, free_nodes=2), "needs cards_per_node"),
    ],
)
def test_a_report_whose_nodes_break_the_bounds_is_refused(pool: Pool, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words) as refused:
        check_capacity([pool])
    assert refused.value.reason == "INCONSISTENT_CAPACITY"


def test_a_sane_report_with_nodes_and_one_without_are_accepted() -> None:
    check_capacity([Pool("nvidia-h100", 32, 32, 21, 8, free_nodes=2, largest_partial_free=5)])
    check_capacity([Pool("ascend-910b", 32, 32, 21, 8)])  # an older agent


def test_the_wire_keeps_unset_nodes_unset_and_said_nodes_said() -> None:
    said = Pool("nvidia-h100", 32, 32, 16, 8, free_nodes=0, largest_partial_free=7)
    assert convert.pool_from_proto(wire.pool_to_proto(said)) == said  # 0 whole nodes is a word, not silence
    unsaid = Pool("nvidia-h100", 32, 32, 16, 8)
    assert convert.pool_from_proto(wire.pool_to_proto(unsaid)).free_nodes is None


# -- the job's shape -------------------------------------------------------------------------------------------

JOB = """\
apiVersion: fedgate.io/v1
kind: Job
metadata: {tenant: deepsea-ai, project: llama-sft}
spec:
  resources: {class: ascend-910b, cards: CARDS, nodes: NODES}
  runs: [{command: [python3, train.py]}]
"""


def test_a_job_file_states_its_nodes_and_round_trips() -> None:
    spec = parse_job_spec(JOB.replace("CARDS", "512").replace("NODES", "64"), "job.yaml")
    assert (spec.resources.cards, spec.resources.nodes) == (512, 64)
    assert spec_to_dict(spec)["spec"]["resources"]["nodes"] == 64
    message = convert.spec_to_proto(spec)
    assert message.resources.nodes == 64
    assert convert.spec_from_proto(message).resources.nodes == 64


@pytest.mark.parametrize(
    ("cards", "nodes", "words"),
    [("16", "3", "do not split evenly over 3 nodes"), ("2048", "2048", "at most 1024"), ("8", "-1", "at least 0")],
)
def test_a_job_file_with_a_bad_shape_is_refused(cards: str, nodes: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_job_spec(JOB.replace("CARDS", cards).replace("NODES", nodes), "job.yaml")


def test_the_one_validator_judges_the_shape_of_a_spec_from_any_entry() -> None:
    run = (StackRun("", "img", ()),)
    assert spec_problem(JobSpec("t", "p", Resources("nvidia-h100", None, 16, 2), run)) is None
    uneven = spec_problem(JobSpec("t", "p", Resources("nvidia-h100", None, 16, 5), run))
    assert uneven is not None and uneven.reason == "BAD_RESOURCES" and uneven.path[-1] == "nodes"
    too_many = spec_problem(JobSpec("t", "p", Resources("nvidia-h100", None, 2048, 2048), run))
    assert too_many is not None and "2048 nodes" in too_many.problem


def test_an_offer_window_below_a_node_leaves_that_many_cards_on_one_node() -> None:
    pool = DevicePool(PoolSpec("ascend-910b", cards=8, offered=8, cards_per_node=8))
    half = SitePolicy(offers={"ascend-910b": (OfferWindow(0.5),)})
    [report] = pool_capacities(half, [pool], NOW, draining=False)
    assert (report.offered, report.free, report.free_nodes, report.largest_partial_free) == (4, 4, 0, 4)
    check_capacity([convert.pool_from_proto(wire.pool_to_proto(report))])
