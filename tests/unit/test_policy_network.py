"""The policy's `network:` section: links between centres, the default for unstated pairs and datasets, read
strictly (every mistake names file, line and fix); a job's `dataset` from YAML through the wire to the model;
admission refusing a dataset the policy does not list."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from fedgate.common.yaml import dump_yaml
from gateway.app.config import REPO_POLICIES
from gateway.errors import ConfigError, InvalidArgument
from gateway.identity.principal import Principal
from gateway.jobs.admission import admit, refusal
from gateway.jobs.model import JobSpec, Resources, StackRun
from gateway.jobs.specfile import parse_job_spec, spec_to_dict
from gateway.jobs.validate import check_spec
from gateway.policy import load_catalogue, load_policy, parse_policy
from gateway.policy.diff import diff_documents
from gateway.policy.network import Link, Network, duration_text
from gateway.transport.convert import spec_from_proto, spec_to_proto
from tests.unit.policytext import error_line, refused

SOURCE = "policy.yaml"
HEADER = (
    "apiVersion: fedgate.io/v1\nkind: Federation\nmetadata:\n  name: net\n"  # lines 1-4
    "tenants:\n  - {name: t, projects: [{name: p}]}\n"  # 5-6
    "sites:\n  - {name: a, region: r1}\n  - {name: b, region: r1}\n  - {name: c, region: r2}\n"  # 7-10
)
POLICY = load_policy(REPO_POLICIES / "federation.yaml")
CATALOGUE = load_catalogue(REPO_POLICIES / "accelerators.yaml")


def _parse(body: str) -> Network:
    return parse_policy((HEADER + body).encode(), SOURCE).network


def _refused(body: str) -> ConfigError:
    return refused(HEADER + body, SOURCE)


def _line(error: ConfigError) -> int:
    return error_line(error, SOURCE)


LINKS = (
    "network:\n  links:\n"  # 11-12
    "    - {between: [a, b], bandwidth_gbps: 100, latency_ms: 2}\n"  # 13
    "    - {between: [c, a], bandwidth_gbps: 10, latency_ms: 30}\n"  # 14
)


def test_links_are_the_same_both_ways() -> None:
    network = _parse(LINKS)
    assert network.link("a", "b") == network.link("b", "a") == Link(100, 2)
    assert network.link("a", "c") == Link(10, 30)


def test_an_unstated_pair_is_unknown_and_weighed_as_the_worst_stated_link() -> None:
    found = _parse(LINKS).link("b", "c")
    assert found == Link(10, 30, stated=False) and found.thin
    assert "unknown" in found.text() and "10 Gb/s, 30 ms" in found.text()


def test_a_default_stands_for_every_unstated_pair() -> None:
    network = _parse(LINKS + "  default: {bandwidth_gbps: 40, latency_ms: 5}\n")
    assert network.link("b", "c") == Link(40, 5) and not Link(40, 5).thin


def test_datasets_say_where_they_live_and_the_copy_is_size_over_bandwidth() -> None:
    network = _parse(LINKS + "  datasets:\n    corpus: {site: a, size_gb: 1000}\n")
    source = network.source("corpus")
    assert source is not None and network.source("") is None and network.source("other") is None
    assert source.transfer_s("a") == 0
    assert source.transfer_s("b") == pytest.approx(1000 * 8 / 100 + 0.002)
    assert source.transfer_s("c") == pytest.approx(1000 * 8 / 10 + 0.03)


def test_a_policy_without_the_section_knows_nothing_of_the_network() -> None:
    network = _parse("")
    assert network == Network() and not network.knows_links
    assert network.link("a", "b") is None and network.rank(["a", "b", "c"]) == (0.0, 0.0)
    for path in sorted((REPO_POLICIES / "examples").glob("*.yaml")):
        if not path.name.endswith((".cases.yaml", ".agent.yaml")):
            assert load_policy(path).network == Network(), path  # every existing policy stays valid


def test_the_demo_policy_links_its_three_centres() -> None:
    network = POLICY.network
    assert network.link("centre-b", "centre-c") == Link(100, 2)
    assert {network.link("centre-a", x).bandwidth_gbps for x in ("centre-b", "centre-c")} == {10}  # type: ignore[union-attr]
    assert set(network.datasets) == {"web-zh", "eval-suite"}


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        (
            "    - {between: [b, a], bandwidth_gbps: 5, latency_ms: 9}\n",
            15,
            "stated twice (also at network.links[0], line 13",
        ),
        ("    - {between: [a, z], bandwidth_gbps: 5, latency_ms: 9}\n", 15, "site 'z' is not in the policy's sites"),
        ("    - {between: [b, b], bandwidth_gbps: 5, latency_ms: 9}\n", 15, "a link joins two different sites"),
        ("    - {between: [b], bandwidth_gbps: 5, latency_ms: 9}\n", 15, "Write between: [site-a, site-b]"),
        ("    - {between: [b, c], bandwidth_gbps: 0, latency_ms: 9}\n", 15, "bandwidth_gbps: must be above 0"),
        ("    - {between: [b, c], bandwidth_gbps: 5, latency_ms: -1}\n", 15, "latency_ms: must be at least 0"),
        ("    - {between: [b, c], bandwidth_gbps: 5, latency_ms: 0}\n", 15, "latency_ms: must be above 0"),
        ("    - {between: [b, c], bandwidth_gbps: .inf, latency_ms: 1}\n", 15, "must be a finite number"),
        ("    - {between: [b, c], bandwidth_gbps: 5}\n", 15, "latency_ms"),
        ("    - {between: [b, c], bandwidth_gbps: 5, latency_ms: 1, jitter: 2}\n", 15, "jitter"),
        ("  default: {bandwidth_gbps: 0, latency_ms: 1}\n", 15, "default.bandwidth_gbps: must be above 0"),
        ("  datasets:\n    corpus: {site: z, size_gb: 5}\n", 16, "site 'z' is not in the policy's sites"),
        ("  datasets:\n    corpus: {site: a, size_gb: 0}\n", 16, "size_gb: must be above 0"),
        ("  datasets:\n    Corpus: {site: a, size_gb: 1}\n", 16, "key 'Corpus' is not valid"),
    ],
)
def test_a_bad_network_is_refused_at_its_line(body: str, line: int, words: str) -> None:
    error = _refused(LINKS + body)
    assert words in error.message and _line(error) == line, error.message


def test_an_unknown_site_error_lists_the_known_ones() -> None:
    error = _refused(LINKS + "    - {between: [a, z], bandwidth_gbps: 5, latency_ms: 9}\n")
    assert "Known sites: a, b, c" in error.message


def test_a_duplicate_pair_is_refused_naming_both_places() -> None:
    error = _refused(LINKS + "    - {between: [c, a], bandwidth_gbps: 10, latency_ms: 30}\n")
    assert error.message.startswith(f"{SOURCE}:15: network.links[2].between: the link between a and c is stated")
    assert "network.links[1], line 14" in error.message and "Keep one of the two entries" in error.message


def test_durations_read_naturally() -> None:
    assert [duration_text(s) for s in (0, 44.6, 600, 1600.03, 7500, math.inf)] == [
        "0 s",
        "45 s",
        "10 min",
        "26 min 40 s",
        "2 h 5 min",
        "unknown",
    ]


# ---- a job's dataset ----------------------------------------------------------------------------------------

JOB = """\
apiVersion: fedgate.io/v1
kind: Job
metadata: {tenant: deepsea-ai, project: llama-sft}
spec:
  resources: {class: nvidia-h100, cards: 4}
  runs: [{stack: cuda, command: [python3, train.py]}]
  dataset: web-zh
"""


def test_a_jobs_dataset_goes_from_yaml_through_the_wire_to_the_model() -> None:
    spec = parse_job_spec(JOB)
    assert spec.dataset == "web-zh"
    assert spec_to_proto(spec).dataset == "web-zh"
    assert spec_from_proto(spec_to_proto(spec)) == spec
    assert parse_job_spec(dump_yaml(spec_to_dict(spec))) == spec


def test_a_malformed_dataset_name_is_refused_in_the_spec_file() -> None:
    with pytest.raises(ConfigError, match=r"job\.yaml:7: spec\.dataset"):
        parse_job_spec(JOB.replace("web-zh", "Web_ZH"), "job.yaml")


def _spec(dataset: str) -> JobSpec:
    return JobSpec(
        "deepsea-ai", "llama-sft", Resources("nvidia-h100", None, 4), (StackRun("cuda", "", ("x",)),), dataset=dataset
    )


def test_admission_refuses_an_unknown_dataset_naming_the_known_ones() -> None:
    alice = Principal.user("demo", "deepsea-ai", "alice")
    assert admit(_spec("web-zh"), alice, POLICY, CATALOGUE).admitted
    decision = admit(_spec("web-en"), alice, POLICY, CATALOGUE)
    assert not decision.admitted and decision.reasons[0].code == "UNKNOWN_DATASET"
    assert "'web-en' is not known to the federation (eval-suite, web-zh)" in decision.reasons[0].message
    assert refusal(decision).metadata["field"] == "spec.dataset"
    bare = parse_policy(
        b"apiVersion: fedgate.io/v1\nkind: Federation\nmetadata: {name: demo}\n"
        b"tenants: [{name: deepsea-ai, projects: [{name: llama-sft}]}]\n",
        "bare.yaml",
    )
    refused = admit(_spec("web-zh"), alice, bare, CATALOGUE)
    assert not refused.admitted and "lists no datasets" in refused.reasons[0].message


# ---- policy diff ------------------------------------------------------------------------------------------


def test_policy_diff_shows_network_changes_by_pair_and_dataset() -> None:
    old = POLICY.document
    assert old is not None and old.network is not None
    _, a_c, b_c = sorted(old.network.links, key=lambda link: sorted(link.between))  # a-b, a-c, b-c
    slower = replace(b_c, between=tuple(reversed(b_c.between)), bandwidth_gbps=40)  # written the other way round
    links = (slower, a_c)  # a-b removed, b-c slower, the order changed
    datasets = {"web-zh": old.network.datasets["web-zh"]}  # eval-suite removed
    new = replace(old, network=replace(old.network, links=links, datasets=datasets))
    changes = {(c.subject, c.change, c.field): c for c in diff_documents(old, new)}
    assert set(changes) == {
        ("link centre-a-centre-b", "removed", ""),
        ("link centre-b-centre-c", "changed", "bandwidth_gbps"),
        ("dataset eval-suite", "removed", ""),
    }
    changed = changes[("link centre-b-centre-c", "changed", "bandwidth_gbps")]
    assert (changed.section, changed.old, changed.new) == ("network", 100, 40)
    assert changed.affects == "gangs spanning centre-b-centre-c"
    assert changes[("dataset eval-suite", "removed", "")].affects == "jobs that name dataset eval-suite"
    assert diff_documents(old, old) == []


def test_check_spec_refuses_a_malformed_dataset_name_from_the_wire() -> None:
    with pytest.raises(InvalidArgument, match=r"spec\.dataset"):
        check_spec(_spec("Web_ZH"))
    check_spec(_spec("web-zh"))
