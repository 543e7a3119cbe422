"""What-if answers: `fedgate simulate --policy A --compare B` (and `--compare-sites`, `--compare-centres`) runs
the twin under A and under B on one trace and reports A, B and B - A per tenant, accelerator class and priority
class. Tiny traces whose answers are known by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.app.config import REPO_POLICIES
from gateway.cli import simulate as cli
from gateway.policy import load_policy
from gateway.simulate import load_sites
from gateway.simulate.centres import load_centres
from gateway.simulate.whatif import compare
from tests.unit.twinworld import POLICY, write_policy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "simulate"
SITE_A = "  - {name: a, pools: [{class: nvidia-h100, cards: 8, cards_per_node: 8}]}\n"
SITE_B = "  - {name: b, pools: [{class: nvidia-h100, cards: 8, cards_per_node: 8}]}\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def four_jobs_of_a_node(tmp_path: Path) -> Path:
    """Four 8-card jobs of 100 s, all at 0 s, homed at a: on one 8-card centre they wait 0, 100, 200, 300 s."""
    rows = "".join(f"j{i},0,100,8,nvidia-h100,a\n" for i in range(4))
    return write(tmp_path / "trace.csv", "job_id,submit_s,duration_s,cards,accelerator,home_site\n" + rows)


def whatif(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> dict[str, Any]:
    assert cli.main([*map(str, argv), "-o", "json"]) == cli.EXIT_OK
    record: dict[str, Any] = json.loads(capsys.readouterr().out)
    return record


def group(record: dict[str, Any], by: str, name: str, mode: str = "federated") -> dict[str, Any]:
    found: list[dict[str, Any]] = [g for g in record["groups"] if (g["mode"], g["by"], g["name"]) == (mode, by, name)]
    assert len(found) == 1
    return found[0]


def test_a_second_centre_cuts_the_queue_by_the_figures_worked_by_hand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = write(tmp_path / "one.yaml", "sites:\n" + SITE_A)
    two = write(tmp_path / "two.yaml", "sites:\n" + SITE_A + SITE_B)
    trace, policy = four_jobs_of_a_node(tmp_path), write_policy(tmp_path)
    record = whatif(capsys, "--trace", trace, "--sites", one, "--policy", policy, "--compare-sites", two)
    everything = group(record, "all", "all")
    # A: waits 0, 100, 200, 300 on one centre; B: 0, 0, 100, 100 on two. Both busy all the time.
    assert everything["a"] | everything["b"] == everything["a"] | {"mean_wait_s": 50.0, "p95_wait_s": 100.0}
    assert (everything["a"]["mean_wait_s"], everything["a"]["p95_wait_s"]) == (150.0, 300.0)
    assert everything["change"]["mean_wait_s"] == -100.0
    assert everything["change"]["mean_wait_s_pct"] == pytest.approx(-200 / 3)
    assert everything["change"]["p95_wait_s_pct"] == pytest.approx(-200 / 3)
    assert everything["a"]["utilisation"] == everything["b"]["utilisation"] == 1.0
    assert everything["change"]["card_hours"] == 0.0 and everything["a"]["card_hours"] == pytest.approx(3200 / 3600)
    # The run's default tenant and class, and the class the jobs ran on, are groups of their own.
    assert {(g["by"], g["name"]) for g in record["groups"]} == {
        ("all", "all"),
        ("tenant", "alpha"),
        ("accelerator", "nvidia-h100"),
        ("class", "default"),
    }
    argv = ["--trace", str(trace), "--sites", str(one), "--policy", str(policy), "--compare-sites", str(two)]
    assert cli.main(argv) == cli.EXIT_OK
    table = capsys.readouterr().out
    assert cli.main([*argv, "-o", "yaml"]) == cli.EXIT_OK
    assert yaml.safe_load(capsys.readouterr().out) == record  # the same record for scripts, as YAML
    assert "B = A with sites" in table and "150 -> 50 (-67%)" in table and "300 -> 100 (-67%)" in table


def test_raising_a_tenants_weight_lowers_its_wait_and_raises_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # alpha weighs 3 and beta 1 in A; B swaps them. Both queue 16 1-card jobs on a 4-card centre.
    swapped = write(
        tmp_path / "b.yaml",
        POLICY.replace("weight: 3", "weight: @").replace("weight: 1", "weight: 3").replace("weight: @", "weight: 1"),
    )
    # Durations staggered so that one card at a time frees: each goes to the tenant further below its share.
    rows = "".join(
        f"{t}{i:02d},0,{10 + 0.37 * i + (0.13 if t == 'beta' else 0):.2f},1,nvidia-h100,a,{t}\n"
        for i in range(16)
        for t in ("alpha", "beta")
    )
    trace = write(tmp_path / "trace.csv", "job_id,submit_s,duration_s,cards,accelerator,home_site,tenant\n" + rows)
    sites = write(tmp_path / "sites.yaml", "sites:\n" + SITE_A.replace("cards: 8,", "cards: 4,"))
    record = whatif(
        capsys, "--trace", trace, "--sites", sites, "--policy", write_policy(tmp_path), "--compare", swapped
    )
    alpha, beta = group(record, "tenant", "alpha"), group(record, "tenant", "beta")
    assert alpha["change"]["mean_wait_s"] > 20 and beta["change"]["mean_wait_s"] < -20  # about 28 s <-> 55 s
    for g in record["groups"]:  # the change is B - A, figure by figure
        for name, value in g["a"].items():
            assert g["change"][name] == g["b"][name] - value
    assert record["a"]["policy"] == str(write_policy(tmp_path)) and record["b"]["policy"] == str(swapped)


def test_each_compare_flag_replaces_only_its_own_file_in_b(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace, policy = four_jobs_of_a_node(tmp_path), write_policy(tmp_path)
    one = write(tmp_path / "one.yaml", "sites:\n" + SITE_A)
    two = write(tmp_path / "two.yaml", "sites:\n" + SITE_A + SITE_B)
    half = write(tmp_path / "half.yaml", "centres:\n  - site: a\n    offers:\n      nvidia-h100: [{share: 0.5}]\n")
    base = ("--trace", trace, "--sites", one, "--policy", policy)
    a = {"policy": str(policy), "sites": str(one), "centres": None}
    for flag, key, value in (("--compare", "policy", policy), ("--compare-sites", "sites", two)):
        record = whatif(capsys, *base, flag, value)
        assert {k: record["a"][k] for k in a} == a
        assert {k: record["b"][k] for k in a} == a | {key: str(value)}
    record = whatif(capsys, *base, "--compare-sites", two, "--compare-centres", half)  # one B of both
    assert {k: record["b"][k] for k in a} == a | {"sites": str(two), "centres": str(half)}
    same = whatif(capsys, *base, "--compare", policy)  # B = A: nothing changes
    assert all(v in (0, 0.0, None) for g in same["groups"] for v in g["change"].values())


def test_an_offer_window_shows_as_a_wait_with_no_ratio_to_a_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = "".join(f"j{i},0,100,4,nvidia-h100,a\n" for i in range(2))
    trace = write(tmp_path / "trace.csv", "job_id,submit_s,duration_s,cards,accelerator,home_site\n" + rows)
    sites = write(tmp_path / "sites.yaml", "sites:\n" + SITE_A)
    half = write(tmp_path / "half.yaml", "centres:\n  - site: a\n    offers:\n      nvidia-h100: [{share: 0.5}]\n")
    record = whatif(
        capsys, "--trace", trace, "--sites", sites, "--policy", write_policy(tmp_path), "--compare-centres", half
    )
    everything = group(record, "all", "all")
    assert (everything["a"]["mean_wait_s"], everything["b"]["mean_wait_s"]) == (0.0, 50.0)  # B: one at a time
    assert everything["change"]["mean_wait_s_pct"] is None
    assert record["a"]["centres"] is None and record["a"]["modes"] == ["federated"]


def test_mode_all_compares_each_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace, policy = four_jobs_of_a_node(tmp_path), write_policy(tmp_path)
    one = write(tmp_path / "one.yaml", "sites:\n" + SITE_A)
    two = write(tmp_path / "two.yaml", "sites:\n" + SITE_A + SITE_B)
    record = whatif(
        capsys, "--trace", trace, "--sites", one, "--policy", policy, "--compare-sites", two, "--mode", "all"
    )
    assert [g["mode"] for g in record["groups"] if g["by"] == "all"] == ["siloed", "federated", "pooled"]
    assert group(record, "all", "all", "siloed")["change"]["mean_wait_s"] == 0.0  # every job is homed at a


def test_a_group_in_one_run_only_counts_as_empty_in_the_other() -> None:
    def run(classes: list[dict[str, Any]]) -> dict[str, Any]:
        total = classes[0]
        return {"total": total, "tenants": [], "accelerators": classes, "classes": []}

    figures = {"jobs": 2, "mean_wait_s": 10.0, "p95_wait_s": 20.0, "utilisation": 0.5, "card_hours": 1.0}
    h100 = {"group": "nvidia-h100", **figures, "rejected": 0, "never_started": 0}
    ascend = {**h100, "group": "ascend-910b"}
    groups = compare(run([h100]), run([h100, ascend]))
    (new,) = [g for g in groups if g["name"] == "ascend-910b"]
    assert new["a"]["jobs"] == 0 and new["change"]["jobs"] == 2 and new["change"]["mean_wait_s_pct"] is None


@pytest.mark.parametrize("extra", [(), ("--engine", "greedy")])
def test_compare_refuses_the_greedy_engine_and_says_to_give_a_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...]
) -> None:
    trace, sites = four_jobs_of_a_node(tmp_path), write(tmp_path / "one.yaml", "sites:\n" + SITE_A)
    policy = ("--policy", str(write_policy(tmp_path))) if extra else ()
    argv = ["--trace", str(trace), "--sites", str(sites), *policy, *extra, "--compare-sites", str(sites)]
    assert cli.main(argv) == cli.EXIT_USAGE
    assert "give --policy" in capsys.readouterr().err


def test_a_bad_b_file_is_refused_with_its_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace, policy = four_jobs_of_a_node(tmp_path), write_policy(tmp_path)
    one = write(tmp_path / "one.yaml", "sites:\n" + SITE_A)
    bad_sites = write(tmp_path / "bad-sites.yaml", "sites:\n" + SITE_A + "    colour: red\n")
    bad_policy = write(tmp_path / "bad.yaml", POLICY.replace("    weight: 3\n", "    wieght: 3\n"))
    base = ["--trace", str(trace), "--sites", str(one), "--policy", str(policy)]
    assert cli.main([*base, "--compare-sites", str(bad_sites)]) == cli.EXIT_USAGE
    assert "bad-sites.yaml:3:" in capsys.readouterr().err
    assert cli.main([*base, "--compare", str(bad_policy)]) == cli.EXIT_USAGE
    assert "bad.yaml:6:" in capsys.readouterr().err


def test_the_what_if_examples_load() -> None:
    def weight(policy: Path) -> float:
        spec = load_policy(policy).tenants["panda-lm"].spec
        assert spec is not None
        return spec.weight

    assert (weight(REPO_POLICIES / "federation.yaml"), weight(EXAMPLES / "whatif-more-panda.yaml")) == (1, 3)
    names = [s.name for s in load_sites(EXAMPLES / "sites-with-centre-d.yaml")]
    assert names == [s.name for s in load_sites(EXAMPLES / "sites.yaml")] + ["centre-d"]
    assert sorted(load_centres(EXAMPLES / "centres-nights-only.yaml")) == ["centre-b", "centre-c"]
