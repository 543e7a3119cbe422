"""Faults on the links between agents and the gateway, through a loopback TCP proxy (tests/chaos/proxy.py).

Each fault lasts less than the site lease (3 s), as a flapping or slow network does: jobs already running go on
and end once, the agents get through again when the link heals, and the shared invariants hold. (A partition
longer than the lease with both sides up is the documented limit of docs/reliability.md, not tested here.)
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gateway.jobs.model import JobState
from tests.chaos.fleet import GatewayFleet
from tests.chaos.invariants import check_federation
from tests.chaos.proxy import LinkProxy
from tests.chaos.sites import TENANT, ChaosAgent, Submitters, beating_job
from tests.integration.harness import Pki
from tests.waiting import eventually

FAULT_S = 1.5


def fault(proxy: LinkProxy, kind: str) -> None:
    """Apply `kind` for FAULT_S seconds (a bounded wait on an event nobody sets), then heal the link."""
    held = threading.Event()
    if kind == "drop":
        proxy.drop()
        held.wait(FAULT_S / 2)
        proxy.drop()  # and again, while the agents are reconnecting
    else:
        proxy.set(kind, delay_s=0.3)
        held.wait(FAULT_S)
    proxy.heal()


@pytest.mark.parametrize("kind", ["drop", "delay", "black_hole", "half_open"])
def test_a_flapping_link_between_agents_and_gateway_loses_nothing_and_runs_each_job_once(
    kind: str, fleet: GatewayFleet, pki: Pki, tmp_path: Path
) -> None:
    fleet.start()
    proxy = LinkProxy(pki, fleet.address)
    agents = [ChaosAgent(proxy, tmp_path / site, site, cards=2) for site in ("centre-a", "centre-b")]
    try:
        with fleet.client(pki.user(TENANT, "alice")) as alice, fleet.client(pki.admin()) as admin:
            for agent in agents:
                agent.start()
            work = Submitters(alice, beating_job(2.5), threads=2, per_thread=2).start()
            eventually(
                lambda: sum(j.state == JobState.RUNNING for j in alice.list_jobs()) >= 2,
                timeout=30,
                what="jobs running",
                detail=fleet.logs,
            )
            connections = proxy.connections
            fault(proxy, kind)
            outcome = check_federation(fleet.store_url, work.join(), admin, agents)
            assert all(job.state == JobState.SUCCEEDED for job in outcome.jobs.values())
            if kind != "delay":  # the agents noticed the fault and dialled again
                assert proxy.connections > connections
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{fleet.logs()}\n" + "\n".join(a.tail() for a in agents)) from None
    finally:
        for agent in agents:
            agent.end()
        proxy.close()
