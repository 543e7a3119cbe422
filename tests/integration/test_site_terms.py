"""The centre's veto through real parts: an agent whose policy refuses a tenant, a real gateway over mTLS.

The agent reports its terms and its windowed offer with every capacity report; the gateway does not place
work the centre would refuse, so such a job waits QUEUED with a reason naming the site's terms and never
runs there, while the tenants the centre accepts run as usual.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.jobs.model import JobSpec, JobState, Resources, StackRun
from tests.integration.harness import AgentHandle, GatewayHandle, start_test_agent, wait_for_capacity
from tests.waiting import eventually, wait_cycles

POLICY = {
    "tenants": ["panda-lm"],
    "max_job_cards": 4,
    # A catch-all window: half the pool at every hour, so the offer the gateway sees is 4 of the 8 cards.
    "offers": {"ascend-910b": [{"share": 0.5}]},
}


def spec(tenant: str, project: str, cards: int = 2) -> JobSpec:
    return JobSpec(
        tenant=tenant,
        project=project,
        resources=Resources("ascend-910b", None, cards),
        runs=(StackRun("cann", "", ("python3", "-c", "print('ok')")),),
    )


@pytest.fixture
def picky_site(gateway: GatewayHandle, tmp_path: Path) -> Iterator[AgentHandle]:
    pools: list[dict[str, object]] = [{"class": "ascend-910b", "cards": 8, "offered": 8, "cards_per_node": 8}]
    agent = start_test_agent(gateway, "centre-a", pools, tmp_path / "a", policy=POLICY)
    wait_for_capacity(gateway, "centre-a")
    yield agent
    agent.stop()


def test_the_gateway_sees_the_offer_the_site_policy_sets(gateway: GatewayHandle, picky_site: AgentHandle) -> None:
    with gateway.client(gateway.pki.admin()) as admin:
        (site,) = [s for s in admin.list_sites() if s.name == "centre-a"]
    (pool,) = site.pools
    assert (pool.total, pool.offered, pool.free) == (8, 4, 4)


def test_a_job_of_a_tenant_the_site_refuses_waits_queued_and_never_runs_there(
    gateway: GatewayHandle, picky_site: AgentHandle
) -> None:
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        refused = alice.create_job(spec("deepsea-ai", "llama-sft"))
        eventually(
            lambda: any(r.code == "SITE_TERMS" for r in alice.get_job(refused.job_id).reasons),
            what="a reason naming the site's terms",
        )
        wait_cycles(gateway, 5)  # five more scheduling cycles: it must still not be placed there
        waiting = alice.get_job(refused.job_id)
    assert waiting.state == JobState.QUEUED, waiting.reasons
    reason = next(r for r in waiting.reasons if r.code == "SITE_TERMS")
    assert reason.site == "centre-a" and "deepsea-ai" in reason.message, reason
    states = [e.state for e in gateway.running.core.store.events(refused.job_id)]
    assert JobState.RUNNING not in states and JobState.DISPATCHED not in states, states

    with gateway.client(gateway.pki.user("panda-lm", "bob")) as bob:  # the site still takes whom it accepts
        accepted = bob.create_job(spec("panda-lm", "eval"))
        eventually(lambda: bob.get_job(accepted.job_id).state == JobState.SUCCEEDED, timeout=20, what="panda-lm job")


def test_a_job_larger_than_the_site_takes_waits_queued_with_the_site_terms(
    gateway: GatewayHandle, picky_site: AgentHandle
) -> None:
    with gateway.client(gateway.pki.user("panda-lm", "bob")) as bob:
        big = bob.create_job(spec("panda-lm", "eval", cards=6))
        eventually(lambda: any(r.code == "SITE_TERMS" for r in bob.get_job(big.job_id).reasons), what="SITE_TERMS")
        assert bob.get_job(big.job_id).state == JobState.QUEUED
    states = [e.state for e in gateway.running.core.store.events(big.job_id)]
    assert JobState.RUNNING not in states, states
