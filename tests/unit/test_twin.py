"""The what-if twin replays a trace as the gateway would schedule it: backfill, preemption, gangs across sites,
fair share by weight and quotas each visibly at work on small synthetic traces, and the same answer every run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedgate.common.offers import Hours, OfferWindow
from gateway.cli import simulate as cli
from gateway.simulate.centres import CentrePolicy
from gateway.simulate.engine import Mode
from gateway.simulate.sites import SiteSpec
from gateway.simulate.trace import TraceJob
from gateway.simulate.twin import Twin, replay
from gateway.simulate.twinjobs import TwinResult
from gateway.simulate.twinreport import summarise_twin
from gateway.sites.model import SiteTerms
from tests.unit.twinworld import H100, catalogue, job, site, write_policy


async def run(tmp_path: Path, jobs: list[TraceJob], sites: list[SiteSpec], mode: Mode = "federated") -> TwinResult:
    return await replay(write_policy(tmp_path), catalogue(), jobs, sites, mode)


async def test_a_small_job_backfills_before_a_big_head_that_cannot_start_yet(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        [job("running", 0, 100, 12), job("big", 1, 10, 16), job("small", 2, 10, 2)],
        [site("a", 16)],
    )
    out = {o.job_id: o for o in result.outcomes}
    assert out["small"].start_s == 2.0  # it ends (max runtime included) before the head could start
    assert out["big"].start_s == 100.0  # and the head still starts as soon as the running job ends
    assert all(o.state == "SUCCEEDED" for o in result.outcomes)


async def test_a_high_priority_job_preempts_a_preemptible_one_after_its_grace(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        [job("low", 0, 1000, 8, priority_class="low"), job("high", 10, 50, 8, priority_class="high")],
        [site("a", 8)],
    )
    out = {o.job_id: o for o in result.outcomes}
    assert out["high"].start_s == 15.0  # 10 s submit + the low class's 5 s grace
    assert out["low"].preemptions == 1
    assert out["low"].end_s == 65.0 + 1000.0  # started again from the beginning once the high job ended
    assert out["low"].state == out["high"].state == "SUCCEEDED"


async def test_a_gang_spans_two_centres_when_no_one_centre_holds_it(tmp_path: Path) -> None:
    result = await run(tmp_path, [job("gang", 0, 10, 16, max_sites=2)], [site("a", 8), site("b", 8)])
    (gang,) = result.outcomes
    assert sorted(gang.sites) == ["a", "b"]
    assert (gang.start_s, gang.end_s, gang.state) == (0.0, 10.0, "SUCCEEDED")
    assert sorted((s.site, s.cards) for s in result.starts) == [("a", 8), ("b", 8)]


async def test_a_gang_that_may_not_span_sites_never_starts_and_says_why(tmp_path: Path) -> None:
    result = await run(tmp_path, [job("wide", 0, 10, 16)], [site("a", 8), site("b", 8)])
    (wide,) = result.outcomes
    assert wide.state == "NEVER_STARTED" and wide.start_s is None
    assert "16" in wide.reason  # the gateway's own pending reason names what it needs


async def test_two_tenants_share_the_cards_by_their_weights(tmp_path: Path) -> None:
    # alpha weighs 3, beta 1: once both hold cards, each freed card goes to the one further below its share.
    jobs = [
        job(f"{tenant}{i:02d}", 0, 10 + 0.37 * i + (0.13 if tenant == "beta" else 0), 1, tenant=tenant)
        for i in range(40)
        for tenant in ("alpha", "beta")
    ]
    result = await run(tmp_path, jobs, [site("a", 8)])
    first = sorted(result.outcomes, key=lambda o: (o.start_s or 0.0, o.job_id))[:40]
    alpha = sum(o.tenant == "alpha" for o in first)
    assert 24 <= alpha <= 34  # 3:1 would be 30; FIFO among equals would be 20


async def test_a_job_over_its_projects_quota_is_refused_and_one_within_it_waits_for_room(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        [
            job("too-big", 0, 10, 8, tenant="capped"),
            job("first", 0, 10, 3, tenant="capped"),
            job("second", 0, 10, 3, tenant="capped"),
        ],
        [site("a", 16)],
    )
    out = {o.job_id: o for o in result.outcomes}
    assert out["too-big"].state == "REJECTED"
    assert "at most 4" in out["too-big"].reason
    assert out["first"].start_s == 0.0
    assert out["second"].start_s == 10.0  # 16 cards free, but the quota holds it until the first ends
    summary = summarise_twin(result)
    assert summary["total"]["rejected"] == 1 and summary["total"]["started"] == 2


async def test_node_shapes_are_packed_a_job_of_two_nodes_waits_for_two_whole_nodes(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        [job("one-card", 0, 50, 1), job("two-nodes", 1, 10, 16), job("fits", 2, 10, 7)],
        [site("a", 24)],
    )
    out = {o.job_id: o for o in result.outcomes}
    assert out["two-nodes"].start_s == 1.0  # two of the three nodes are whole
    assert out["fits"].start_s == 2.0  # packed onto the partly used node, not a whole one
    nodes = {s.job_id: s.nodes for s in result.starts}
    assert nodes["two-nodes"] == 2


async def test_the_same_inputs_give_the_same_outcomes(tmp_path: Path) -> None:
    jobs = [
        job(
            f"j{i:03d}",
            i * 0.7,
            5 + (i * 7) % 23,
            1 + (i * 5) % 12,
            home="ab"[i % 2],
            tenant=("alpha", "beta")[i % 3 % 2],
            priority_class=("low", "", "high")[i % 3],
            max_sites=1 + i % 2,
        )
        for i in range(80)
    ]
    sites = [site("a", 16), site("b", 8)]
    runs = [await run(tmp_path, jobs, sites) for _ in range(2)]
    assert runs[0].outcomes == runs[1].outcomes
    assert runs[0].starts == runs[1].starts
    assert all(o.state in {"SUCCEEDED", "REJECTED"} for o in runs[0].outcomes)
    siloed = [await run(tmp_path, jobs, sites, "siloed") for _ in range(2)]
    assert siloed[0].outcomes == siloed[1].outcomes


async def test_siloed_jobs_run_only_at_home_and_pooled_on_one_site(tmp_path: Path) -> None:
    jobs = [job("at-a", 0, 10, 8, home="a"), job("at-b", 0, 10, 8, home="b"), job("also-b", 0, 10, 8, home="b")]
    sites = [site("a", 8), site("b", 8)]
    siloed = {o.job_id: o for o in (await run(tmp_path, jobs, sites, "siloed")).outcomes}
    assert {k: (o.sites, o.start_s) for k, o in siloed.items()} == {
        "at-a": (("a",), 0.0),
        "at-b": (("b",), 0.0),
        "also-b": (("b",), 10.0),  # siloed: it waits at home though a has room later
    }
    pooled = (await run(tmp_path, jobs, sites, "pooled")).outcomes
    assert {o.sites for o in pooled} == {("pooled",)}


def test_the_cli_runs_the_twin_when_given_a_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text(
        "job_id,submit_s,duration_s,cards,accelerator,home_site\nj1,0,10,4,nvidia-h100,a\nj2,1,10,99,nvidia-h100,a\n"
    )
    sites = tmp_path / "sites.yaml"
    sites.write_text("sites:\n  - {name: a, pools: [{class: nvidia-h100, cards: 8, cards_per_node: 8}]}\n")
    policy = write_policy(tmp_path)
    argv = ["--trace", str(trace), "--sites", str(sites), "--policy", str(policy), "--mode", "federated", "-o", "json"]
    assert cli.main(argv) == cli.EXIT_OK
    figures = json.loads(capsys.readouterr().out)
    assert figures["engine"] == "twin"
    total = figures["modes"]["federated"]["total"]
    assert (total["jobs"], total["started"], total["never_started"]) == (2, 1, 1)
    assert cli.main([*argv[:-6], "--mode", "federated", "-o", "json"]) == cli.EXIT_OK  # no policy: greedy, as before
    assert "engine" not in json.loads(capsys.readouterr().out)


async def test_a_centre_offers_by_its_windows_and_serves_only_the_tenants_its_terms_accept(tmp_path: Path) -> None:
    night_off = CentrePolicy(
        offers={H100: (OfferWindow(share=0.0, hours=Hours.parse("00:00-08:00")), OfferWindow(share=1.0))}
    )
    alpha_only = CentrePolicy(terms=SiteTerms(tenants=("alpha",)))
    result = await replay(
        write_policy(tmp_path),
        catalogue(),
        [job("early", 60, 10, 4), job("beta-job", 0, 10, 4, tenant="beta")],
        [site("a", 8), site("b", 8)],
        centres={"a": night_off, "b": alpha_only},
    )
    out = {o.job_id: o for o in result.outcomes}
    assert out["early"].sites == ("b",) and out["early"].start_s == 60.0  # a offers nothing before 08:00
    assert out["beta-job"].sites == ("a",) and out["beta-job"].start_s == 8 * 3600.0  # b refuses beta: a at 08:00


async def test_a_job_no_window_ever_makes_room_for_is_reported_never_started(tmp_path: Path) -> None:
    half = CentrePolicy(offers={H100: (OfferWindow(share=0.5, days=("sat", "sun")), OfferWindow(share=0.25))})
    result = await replay(
        write_policy(tmp_path), catalogue(), [job("too-big", 0, 10, 6)], [site("a", 8)], centres={"a": half}
    )
    (too_big,) = result.outcomes
    assert too_big.state == "NEVER_STARTED"


async def test_an_advance_booking_keeps_its_cards_for_its_project_through_its_window(tmp_path: Path) -> None:
    twin = Twin(write_policy(tmp_path), catalogue(), [site("a", 8)])
    twin.book("beta", "tune", H100, 6, 100, 1000)
    jobs = [
        job("before", 0, 50, 4),
        job("outsider", 150, 10, 4),  # alpha: only 2 cards are not kept for beta
        job("insider", 150, 10, 6, tenant="beta"),  # runs on the kept cards
    ]
    result = await twin.run(jobs)
    out = {o.job_id: o for o in result.outcomes}
    assert out["before"].start_s == 0.0  # before the window, every card is anyone's
    assert out["insider"].start_s == 150.0
    assert out["outsider"].start_s == 1000.0  # the booking's window closed


def test_the_cli_reads_each_centres_windows_and_terms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("job_id,submit_s,duration_s,cards,accelerator,home_site\nj1,0,10,8,nvidia-h100,a\n")
    sites = tmp_path / "sites.yaml"
    sites.write_text("sites:\n  - {name: a, pools: [{class: nvidia-h100, cards: 8, cards_per_node: 8}]}\n")
    centres = tmp_path / "centres.yaml"
    centres.write_text(
        "centres:\n  - site: a\n    offers:\n      nvidia-h100:\n"
        '        - {hours: "00:00-01:00", share: 0.5}\n        - {share: 1}\n'
    )
    policy = write_policy(tmp_path)
    argv = ["--trace", str(trace), "--sites", str(sites), "--policy", str(policy), "--mode", "federated"]
    assert cli.main([*argv, "--centres", str(centres), "-o", "json"]) == cli.EXIT_OK
    (ran,) = json.loads(capsys.readouterr().out)["modes"]["federated"]["jobs"]
    assert ran["start_s"] == 3600.0  # half the pool is offered until 01:00 UTC
    assert cli.main([*argv, "--period", "0"]) == cli.EXIT_USAGE  # a period of 0 would never let time move
    assert "period must be above 0" in capsys.readouterr().err
    centres.write_text("centres:\n  - site: nowhere\n")
    assert cli.main([*argv, "--centres", str(centres)]) == cli.EXIT_USAGE
    assert "'nowhere' is not in the sites file" in capsys.readouterr().err


REPLAY_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from gateway.simulate.twin import replay
from tests.unit.twinworld import catalogue, job, site, write_policy
jobs = [
    job(f"j{i:03d}", (i // 4) * 2.0, 5 + (i * 7) % 23, 1 + (i * 5) % 12, home="ab"[i % 2],
        tenant=("alpha", "beta")[i % 3 % 2], priority_class=("low", "", "high")[i % 3], max_sites=1 + i % 2)
    for i in range(60)
]
result = asyncio.run(replay(write_policy(Path(sys.argv[1])), catalogue(), jobs, [site("a", 16), site("b", 8)]))
print(json.dumps([o.to_json() for o in result.outcomes]))
"""


def test_a_replay_gives_the_same_answer_in_another_process_with_another_hash_seed(tmp_path: Path) -> None:
    answers = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        ran = subprocess.run(
            [sys.executable, "-c", REPLAY_SCRIPT, str(tmp_path)],
            env=env,
            cwd=Path(__file__).resolve().parents[2],  # the repository, for `tests.unit.twinworld`
            capture_output=True,
            text=True,
            check=True,
        )
        answers.add(ran.stdout)
    assert len(answers) == 1


async def test_a_gang_part_reserved_in_the_cycle_of_a_multi_node_launch_leaves_its_nodes_alone(tmp_path: Path) -> None:
    """Found by the twin: a cycle sent a gang part's Reserve as it planned the gang but its launches only at its
    end, so the site held the part on a whole node the same cycle had given a multi-node launch, and handed that
    launch back. The cycle now asks its gangs' sites after its launches."""
    jobs = [job("two-nodes", 0, 10, 9), job("gang", 0, 10, 10, max_sites=2)]
    result = await run(tmp_path, jobs, [site("a", 16), site("b", 8)])
    out = {o.job_id: o for o in result.outcomes}
    assert out["gang"].start_s == 0.0
    assert result.returned == ()
    assert out["two-nodes"].start_s == 0.0


async def test_a_class_s_utilisation_is_of_its_own_cards(tmp_path: Path) -> None:
    """Per accelerator class, utilisation is the class's card-seconds over its own cards, not every card: 512
    idle cards of another class do not make a busy class look idle."""
    jobs = [job("h", 0, 100, 8), TraceJob("a", 0, 100, 8, "ascend-910b", "b")]
    result = await run(tmp_path, jobs, [site("a", 8), site("b", 512, cls="ascend-910b")])
    summary = summarise_twin(result)
    by_class = {g["group"]: g for g in summary["accelerators"]}
    assert by_class[H100]["utilisation"] == pytest.approx(1.0)  # 8 of its 8 cards for the whole span
    assert by_class["ascend-910b"]["utilisation"] == pytest.approx(8 / 512)
    assert summary["total"]["utilisation"] == pytest.approx(16 / 520)


async def test_a_job_of_any_class_runs_on_whatever_class_a_site_has(tmp_path: Path) -> None:
    anyclass = TraceJob("any", 0, 10, 2, "", "a")  # the trace's empty accelerator: any class
    result = await run(tmp_path, [anyclass], [site("a", 8, cls="nvidia-a100")])
    (out,) = result.outcomes
    assert (out.state, out.sites, out.start_s) == ("SUCCEEDED", ("a",), 0.0)


async def test_a_job_longer_than_the_gateways_runtime_limit_is_admitted_and_runs_its_duration(tmp_path: Path) -> None:
    days40 = 40 * 86400.0  # the Alibaba trace has pods of up to 145 days; the gateway admits at most 30
    result = await run(tmp_path, [job("long", 0, days40, 1)], [site("a", 8)])
    (out,) = result.outcomes
    assert (out.state, out.end_s) == ("SUCCEEDED", days40)
