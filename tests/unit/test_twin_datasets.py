"""The twin gives a trace job's data (dataset_site, dataset_gb) to the gateway as a dataset of the policy, so
placement weighs copying it: the job starts where its data lies when it fits there, and says why when not."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.simulate.twin import Twin, replay
from gateway.simulate.twindata import trace_datasets, with_datasets
from tests.unit.twinworld import POLICY, catalogue, job, site

NETWORK = """\
sites:
  - {name: a, region: r1}
  - {name: b, region: r2}
network:
  links:
    - {between: [a, b], bandwidth_gbps: 10, latency_ms: 20}
"""


def policy(tmp_path: Path, extra: str = NETWORK) -> Path:
    path = tmp_path / "federation.yaml"
    path.write_text(POLICY + extra)
    return path


async def test_a_job_starts_at_the_site_holding_its_dataset_when_it_fits_there(tmp_path: Path) -> None:
    # a (8 cards) is the best fit for 8 cards; b (16) also fits, and holds the job's 500 GB (400 s away from a).
    jobs = [job("near", 0, 10, 8, dataset_site="b", dataset_gb=500.0), job("plain", 100, 10, 8)]
    result = await replay(policy(tmp_path), catalogue(), jobs, [site("a", 8), site("b", 16)])
    out = {o.job_id: o for o in result.outcomes}
    assert out["near"].sites == ("b",)
    assert out["plain"].sites == ("a",)  # without a dataset, best fit


async def test_a_job_whose_data_site_is_full_starts_elsewhere_and_says_dataset_transfer(tmp_path: Path) -> None:
    jobs = [job("fill-b", 0, 100, 16, home="b"), job("far", 1, 10, 8, dataset_site="b", dataset_gb=500.0)]
    twin = Twin(policy(tmp_path), catalogue(), [site("a", 8), site("b", 16)])
    result = await twin.run(jobs, horizon_s=5)  # stopped while it runs: its reasons are still the placement's
    far = result.outcomes[1]
    assert (far.sites, far.start_s, far.state) == (("a",), 1.0, "RUNNING")
    found = twin.core.book.find(twin.ids["far"])
    assert found is not None and found.spec.dataset == "trace-b-500gb"
    assert "DATASET_TRANSFER" in [r.code for r in found.reasons]


def test_each_distinct_site_and_size_is_one_dataset_with_a_policy_name() -> None:
    jobs = [
        job("1", 0, 1, 1, dataset_site="b", dataset_gb=40.0),
        job("2", 0, 1, 1, dataset_site="b", dataset_gb=40.0),
        job("3", 0, 1, 1, dataset_site="Big.Site", dataset_gb=2.5),
        job("4", 0, 1, 1, dataset_site="b", dataset_gb=0.0),
        job("5", 0, 1, 1),
    ]
    assert trace_datasets(jobs) == {("b", 40.0): "trace-b-40gb", ("Big.Site", 2.5): "trace-big-site-2p5gb"}


def test_the_datasets_join_the_policy_through_its_own_loader(tmp_path: Path) -> None:
    extended = with_datasets(policy(tmp_path), {("b", 40.0): "trace-b-40gb", ("c", 1.0): "trace-c-1gb"}, [])
    assert extended.network.datasets["trace-b-40gb"].site == "b"
    assert extended.sites["c"].region == "unknown"  # a centre the policy did not list is added to hold its data
    assert extended.sites["a"].region == "r1"
    with pytest.raises(ConfigError, match=r"Big\.Site.* is not valid"):
        with_datasets(policy(tmp_path), {("Big.Site", 1.0): "trace-data-1"}, [])


def test_a_policy_without_a_network_section_gains_one_and_a_taken_name_is_refused(tmp_path: Path) -> None:
    bare = policy(tmp_path, "")
    extended = with_datasets(bare, {("a", 2.0): "trace-a-2gb"}, [site("a", 8)])
    assert extended.network.datasets["trace-a-2gb"].size_gb == 2.0
    assert not extended.network.knows_links  # no links stated: every transfer is unknown and weighs alike
    taken = policy(tmp_path, NETWORK + "  datasets:\n    trace-a-2gb: {site: a, size_gb: 1}\n")
    with pytest.raises(ConfigError, match="already in the policy"):
        with_datasets(taken, {("a", 2.0): "trace-a-2gb"}, [])
