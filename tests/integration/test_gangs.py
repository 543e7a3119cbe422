"""Gangs across sites through real parts: three real agents (local backend) and a real gateway over mTLS.

A job too big for any one site but allowed two sites is reserved part by part (Reserve, then Commit) and
launched at both with one epoch; a refusal at the second site or a site that never answers releases the first
site's hold (its free capacity comes back) and the job waits QUEUED with the site's word in ExplainJob.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.app.compose import Core
from gateway.cli import job as job_cli
from gateway.jobs.model import JobSpec, JobState, Reason, Resources, StackRun, Topology
from gateway.placement.place import OptionFilter
from gateway.policy.quotas import Usage
from gateway.sites.model import SiteView
from tests.integration.harness import AgentHandle, GatewayHandle, start_test_agent, wait_for_capacity
from tests.security.support import SiteStream
from tests.waiting import eventually

ASCEND = "ascend-910b"
PRINT_EPOCH = "import os; print(os.environ['FEDGATE_SITE'], os.environ['FEDGATE_EPOCH'])"


def gang(cards: int = 12, tenant: str = "deepsea-ai", project: str = "llama-sft") -> JobSpec:
    return JobSpec(
        tenant=tenant,
        project=project,
        resources=Resources(ASCEND, None, cards),
        runs=(StackRun("cann", "", ("python3", "-c", PRINT_EPOCH)),),
        topology=Topology(max_sites=2, min_cards_per_site=2),
    )


def ascend_pool(cards: int = 8) -> list[dict[str, object]]:
    return [{"class": ASCEND, "cards": cards, "offered": cards, "cards_per_node": 8}]


def free_at(gateway: GatewayHandle, site: str) -> int:
    with gateway.client(gateway.pki.admin()) as admin:
        (view,) = [s for s in admin.list_sites() if s.name == site]
    return sum(p.free for p in view.pools if p.accelerator_class == ASCEND)


@pytest.fixture
def agents(gateway: GatewayHandle, tmp_path: Path) -> Iterator[Callable[..., AgentHandle]]:
    started: list[AgentHandle] = []

    def start(site: str, pools: list[dict[str, object]], **extra: object) -> AgentHandle:
        agent = start_test_agent(gateway, site, pools, tmp_path / site, **extra)
        started.append(agent)
        wait_for_capacity(gateway, site)
        return agent

    yield start
    for agent in started:
        agent.stop()


def federation(gateway: GatewayHandle) -> Core:
    return gateway.running.core


def ignore_site_terms(fed: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's copy of the centres' terms is stale (as after an agent's config changed and before it
    reported): it nominates a site whose own policy will refuse at Reserve time."""
    original = fed.usage.allows

    def allows(spec: JobSpec, usage: Usage, policy: object = None, part_cards: int = 0) -> OptionFilter:
        inner = original(spec, usage, policy, part_cards)  # type: ignore[arg-type]

        def verdict(site: SiteView, cls: str) -> Reason | None:
            reason = inner(site, cls)
            return None if reason is not None and reason.code == "SITE_TERMS" else reason

        return verdict

    monkeypatch.setattr(fed.usage, "allows", allows)


def test_a_two_site_gang_runs_at_both_with_one_epoch_and_succeeds(
    gateway: GatewayHandle, agents: Callable[..., AgentHandle], tmp_path: Path
) -> None:
    agents("centre-a", ascend_pool())
    agents("centre-b", ascend_pool())
    agents("centre-c", [{"class": "nvidia-h100", "cards": 8, "offered": 8, "cards_per_node": 8}])
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        job = alice.create_job(gang())
        eventually(lambda: alice.get_job(job.job_id).state == JobState.SUCCEEDED, timeout=30, what="gang succeeded")
        done = alice.get_job(job.job_id)
    assert sorted((p.site, p.cards) for p in done.placements) == [("centre-a", 8), ("centre-b", 4)]
    states = [e.state for e in federation(gateway).store.events(job.job_id)]
    assert states[:3] == [JobState.QUEUED, JobState.RESERVING, JobState.DISPATCHED], states
    for site in ("centre-a", "centre-b"):
        output = (tmp_path / site / "jobs" / job.job_id / str(done.epoch) / "output.log").read_text()
        assert output.split() == [site, str(done.epoch)]
    eventually(lambda: free_at(gateway, "centre-a") == 8 and free_at(gateway, "centre-b") == 8, what="cards back")


def test_a_refusal_at_the_second_site_releases_the_first_and_the_job_waits_with_the_sites_reason(
    gateway: GatewayHandle,
    agents: Callable[..., AgentHandle],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fed = federation(gateway)
    fed.gangs.timeout = timedelta(seconds=60)  # so that the first site's cards come back by Abort, not expiry
    fed.gangs.backoff = timedelta(seconds=60)  # and the job is still backing off from centre-b when looked at
    agents("centre-a", ascend_pool())
    agents("centre-b", ascend_pool(), policy={"tenants": ["panda-lm"]})
    agents("centre-c", [{"class": "nvidia-h100", "cards": 8, "offered": 8, "cards_per_node": 8}])
    ignore_site_terms(fed, monkeypatch)
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        job = alice.create_job(gang())
        eventually(
            lambda: any(r.code == "SITE_REFUSED_RESERVE" for r in alice.get_job(job.job_id).reasons),
            what="the site's refusal in the job's reasons",
        )
        eventually(lambda: free_at(gateway, "centre-a") == 8, what="centre-a's hold released")
        waiting = alice.get_job(job.job_id)
        explained = alice.explain_job(job.job_id)
    assert waiting.state == JobState.QUEUED and waiting.placements == ()
    (said,) = [r for r in explained.reasons if r.code == "SITE_REFUSED_RESERVE"]
    assert said.site == "centre-b" and "tenant deepsea-ai is not accepted here" in said.message
    assert any(r.code == "SITE_BACKOFF" and r.site == "centre-b" for r in explained.reasons)
    states = [e.state for e in fed.store.events(job.job_id)]
    assert JobState.DISPATCHED not in states and states.count(JobState.RESERVING) == 1, states
    alice_flags = ["--gateway", gateway.address, "--creds", str(gateway.pki.user("deepsea-ai", "alice"))]
    assert job_cli.main(["explain", job.job_id, "-o", "json", *alice_flags]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert any(r["code"] == "SITE_REFUSED_RESERVE" and r["site"] == "centre-b" for r in printed["reasons"]), printed


def test_a_site_that_never_answers_times_out_and_every_hold_is_released(
    gateway: GatewayHandle, agents: Callable[..., AgentHandle]
) -> None:
    fed = federation(gateway)
    fed.gangs.timeout = timedelta(seconds=1)
    agents("centre-a", ascend_pool())
    agents("centre-c", [{"class": "nvidia-h100", "cards": 8, "offered": 8, "cards_per_node": 8}])
    mute = SiteStream(gateway, gateway.pki.site("centre-b"))  # says hello and reports, never answers a Reserve
    try:
        assert mute.hello("centre-b").WhichOneof("kind") == "welcome"
        mute.report(8)
        wait_for_capacity(gateway, "centre-b")
        with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
            job = alice.create_job(gang())
            reserve = mute.next_of("reserve").reserve
            assert reserve.reservation_id.startswith("gang:") and reserve.job_id == job.job_id
            assert (reserve.cards, reserve.tenant, reserve.epoch) == (4, "deepsea-ai", 1)
            eventually(
                lambda: any(r.code == "RESERVE_TIMEOUT" for r in alice.get_job(job.job_id).reasons),
                what="the reservation timing out",
            )
            assert alice.get_job(job.job_id).state == JobState.QUEUED
            assert mute.next_of("abort").abort.reservation_id == reserve.reservation_id
        eventually(lambda: free_at(gateway, "centre-a") == 8, what="centre-a's hold released")
    finally:
        mute.close()


def test_a_gang_lands_on_the_best_linked_pair_and_explain_says_why(
    gateway: GatewayHandle, agents: Callable[..., AgentHandle], capsys: pytest.CaptureFixture[str]
) -> None:
    """Three centres with 8 free Ascend cards each: any two hold a 12-card gang, and a+b is the tightest pair by
    name. The demo policy links b and c at 100 Gb/s, 2 ms, and a to either at 10 Gb/s: the gang takes b and c."""
    for site in ("centre-a", "centre-b", "centre-c"):
        agents(site, ascend_pool())
    sleeping = replace(gang(), runs=(StackRun("cann", "", ("python3", "-c", "import time; time.sleep(60)")),))
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        job = alice.create_job(sleeping)
        eventually(lambda: alice.get_job(job.job_id).state == JobState.RUNNING, timeout=30, what="gang running")
        running = alice.get_job(job.job_id)
        alice_flags = ["--gateway", gateway.address, "--creds", str(gateway.pki.user("deepsea-ai", "alice"))]
        assert job_cli.main(["explain", job.job_id, "-o", "json", *alice_flags]) == 0
        printed = json.loads(capsys.readouterr().out)
        alice.cancel_job(job.job_id)
    assert sorted(p.site for p in running.placements) == ["centre-b", "centre-c"]
    said = {r["code"]: r["message"] for r in printed["reasons"]}
    assert said["GANG_LINKS"] == (
        "parts on centre-b and centre-c: linked at 100 Gb/s, 2 ms (the best-connected set of 2 that fits; "
        "the next best crosses centre-a-centre-b at 10 Gb/s, 28 ms)"
    )
    assert "GANG_THIN_LINK" not in said and "GANG_RESERVED" in said
