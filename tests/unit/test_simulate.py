"""The trace simulator: hand-checked waits in each mode, its bounds, and strict reading of its two inputs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from fedgate.common.yaml import load_yaml
from gateway.cli.simulate import main
from gateway.errors import ConfigError
from gateway.simulate import PoolSpec, SiteSpec, TraceJob, parse_sites, parse_trace, simulate, summarise
from gateway.simulate.engine import check_trace

HEADER = "job_id,submit_s,duration_s,cards,accelerator,home_site\n"


def two_sites(cards_a: int = 4, cards_b: int = 4) -> tuple[SiteSpec, ...]:
    return (
        SiteSpec("a", "r1", (PoolSpec("x", cards_a, 4),)),
        SiteSpec("b", "r2", (PoolSpec("x", cards_b, 4), PoolSpec("y", 2, 2))),
    )


def job(job_id: str, submit: float, duration: float, cards: int, home: str = "a", cls: str = "") -> TraceJob:
    return TraceJob(job_id, submit, duration, cards, cls, home)


def waits(jobs: list[TraceJob], sites: tuple[SiteSpec, ...], mode: str) -> dict[str, float | None]:
    result = simulate(jobs, sites, mode)  # type: ignore[arg-type]
    return {o.job.job_id: (o.wait_s if o.scheduled else None) for o in result.outcomes}


def test_a_job_that_waits_at_home_runs_at_once_federated_and_pooled() -> None:
    jobs = [job("j1", 0, 100, 4), job("j2", 10, 50, 4)]
    assert waits(jobs, two_sites(), "siloed") == {"j1": 0, "j2": 90}
    assert waits(jobs, two_sites(), "federated") == {"j1": 0, "j2": 0}
    assert waits(jobs, two_sites(), "pooled") == {"j1": 0, "j2": 0}


def test_federated_places_where_the_real_placement_says() -> None:
    result = simulate([job("j1", 0, 100, 4), job("j2", 10, 50, 4)], two_sites(), "federated")
    assert [(o.site, o.accelerator_class) for o in result.outcomes] == [("a", "x"), ("b", "x")]


def test_the_queue_is_fifo_and_skips_a_job_that_does_not_fit() -> None:
    # j2 (4 cards) cannot start while j1 holds 2 of 4; j3 (2 cards), submitted later, backfills at once.
    jobs = [job("j1", 0, 100, 2), job("j2", 1, 10, 4), job("j3", 2, 10, 2)]
    assert waits(jobs, two_sites(), "siloed") == {"j1": 0, "j2": 99, "j3": 0}


def test_a_job_bigger_than_its_home_is_unschedulable_siloed_but_runs_federated() -> None:
    sites = two_sites(cards_a=4, cards_b=8)
    jobs = [job("big", 0, 10, 8)]
    siloed = simulate(jobs, sites, "siloed")
    assert not siloed.outcomes[0].scheduled
    assert "at most 4" in siloed.outcomes[0].reason
    assert summarise(siloed).unschedulable == 1
    assert waits(jobs, sites, "federated") == {"big": 0}


def test_a_class_only_elsewhere_is_found_by_federation() -> None:
    jobs = [job("y-job", 0, 10, 2, home="a", cls="y")]
    assert waits(jobs, two_sites(), "siloed") == {"y-job": None}
    assert waits(jobs, two_sites(), "federated") == {"y-job": 0}
    assert waits(jobs, two_sites(), "pooled") == {"y-job": 0}


def test_a_job_of_any_class_takes_whichever_fits() -> None:
    jobs = [job("j1", 0, 100, 4, home="b"), job("j2", 0, 100, 2, home="b")]
    result = simulate(jobs, two_sites(), "siloed")
    assert [o.accelerator_class for o in result.outcomes] == ["x", "y"]


def test_figures_on_a_hand_checked_trace() -> None:
    jobs = [job("j1", 0, 100, 4), job("j2", 10, 50, 4)]
    report = summarise(simulate(jobs, two_sites(), "siloed"))
    assert (report.jobs, report.mean_wait_s, report.p95_wait_s) == (2, 45, 90)
    assert report.mean_jct_s == (100 + 140) / 2
    # 600 busy card-seconds over 10 cards (x 4, x 4, y 2) for a makespan of 150 s.
    assert report.utilisation == pytest.approx(600 / (10 * 150))


def random_trace(seed: int, count: int = 300) -> list[TraceJob]:
    rng = random.Random(seed)
    return [
        job(f"j{i}", rng.uniform(0, 2000), rng.uniform(1, 200), rng.choice((1, 1, 2, 4)), rng.choice("ab"))
        for i in range(count)
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pooled_is_never_worse_than_federated(seed: int) -> None:
    # Not asserted: federated <= siloed. On seed 1 (overloaded, ~0.9 utilisation) federated waits longer on
    # average than siloed: greedy FIFO without reservations lets later small jobs take freed cards anywhere.
    jobs = random_trace(seed)
    reports = {mode: summarise(simulate(jobs, two_sites(), mode)) for mode in ("siloed", "federated", "pooled")}
    assert reports["pooled"].mean_wait_s <= reports["federated"].mean_wait_s
    for report in reports.values():
        assert report.jobs == len(jobs)
        assert 0 < report.utilisation <= 1


def test_the_same_inputs_give_the_same_outcomes() -> None:
    jobs = random_trace(7)
    assert simulate(jobs, two_sites(), "federated") == simulate(jobs, two_sites(), "federated")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "1: empty file"),
        ("id,submit,duration\n", "1: header is"),
        (HEADER + "j1,0,10,1,,a\nj2,0,10,two,,a\n", "3: cards 'two' is not a whole number"),
        (HEADER + "j1,0,10,0,,a\n", "2: cards must be at least 1"),
        (HEADER + "j1,-1,10,1,,a\n", "2: submit_s must be a finite number"),
        (HEADER + "j1,0,nan,1,,a\n", "2: duration_s must be a finite number"),
        (HEADER + "j1,0,10,1,,a\nj1,5,10,1,,a\n", "3: job_id 'j1' already used on line 2"),
        (HEADER + "j1,0,10,1,a\n", "2: 5 fields"),
        (HEADER + "j1,0,10,1,,\n", "2: home_site is empty"),
    ],
)
def test_bad_traces_are_refused_with_their_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^trace.csv:{message}"):
        parse_trace(text, "trace.csv")


def test_a_home_site_missing_from_the_sites_file_names_the_line() -> None:
    jobs = parse_trace(HEADER + "j1,0,10,1,,a\nj2,0,10,1,,c\n", "t.csv")
    with pytest.raises(ConfigError, match=r"^t.csv:3: home_site 'c' is not in the sites file"):
        check_trace(jobs, two_sites(), "t.csv")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sites:\n  - name: a\n    pools:\n      - {class: x, cards: 4, gpus: 8}\n", ":4: .*unknown key 'gpus'"),
        ("sites:\n  - name: a\n    pools:\n      - {class: x}\n", ":4: .*missing required key 'cards'"),
        ("sites:\n  - name: a\n    pools:\n      - {class: x, cards: '4'}\n", ":4: .*must be an integer"),
        ("sites:\n  - {name: a, pools: []}\n  - {name: a, pools: []}\n", ":3: .*described twice"),
        ("sites: []\n", ":1: .*the list is empty"),
    ],
)
def test_bad_sites_files_are_refused_with_their_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^sites.yaml{message}"):
        parse_sites(load_yaml(text, "sites.yaml", error=ConfigError))


def test_the_command_prints_every_mode_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace, sites = tmp_path / "t.csv", tmp_path / "s.yaml"
    trace.write_text(HEADER + "j1,0,100,4,,a\nj2,10,50,4,,a\n")
    sites.write_text(
        "sites:\n  - {name: a, region: r1, pools: [{class: x, cards: 4}]}\n"
        "  - {name: b, pools: [{class: x, cards: 4, cards_per_node: 4}]}\n"
    )
    assert main(["--trace", str(trace), "--sites", str(sites), "--mode", "all", "-o", "json"]) == 0
    modes = json.loads(capsys.readouterr().out)["modes"]
    assert list(modes) == ["siloed", "federated", "pooled"]
    assert {"jobs", "mean_wait_s", "p95_wait_s", "mean_jct_s", "utilisation"} <= set(modes["siloed"])
    assert (modes["siloed"]["mean_wait_s"], modes["federated"]["mean_wait_s"]) == (45, 0)


def test_the_command_names_a_bad_input_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace, sites = tmp_path / "t.csv", tmp_path / "s.yaml"
    trace.write_text(HEADER + "j1,0,100,4,,nowhere\n")
    sites.write_text("sites:\n  - {name: a, pools: [{class: x, cards: 4}]}\n")
    assert main(["--trace", str(trace), "--sites", str(sites)]) == 2
    assert f"{trace}:2: home_site 'nowhere'" in capsys.readouterr().err


def test_window_utilisation_counts_only_the_busy_seconds_while_work_arrives() -> None:
    jobs = [job("j1", 0, 100, 4), job("j2", 10, 50, 4)]
    report = summarise(simulate(jobs, two_sites(), "siloed"))
    # Window [0 s, 10 s] (5th and 95th percentile submits): only j1 runs in it (j2 waits for j1 at home a),
    # 4 cards x 10 s over 10 cards x 10 s.
    assert report.window_utilisation == pytest.approx(40 / (10 * 10))
    late = summarise(simulate([*jobs, job("j3", 1000, 10, 1)], two_sites(), "siloed"))
    assert late.utilisation < report.utilisation  # a late arrival stretches the makespan...
    assert late.window_utilisation > 0  # ...while the window still sees the busy start
