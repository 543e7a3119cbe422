"""kill -9 of the LEADER of two gateways on one PostgreSQL, at each named crash point: the standby takes over
(no restart of anything), the agents and clients, given both addresses, follow it, and the shared invariants
hold. The same crash points as `test_gateway_crashes.py`, where a restart on the same store replaces the gateway;
here the replacement is a process that was already running, with its own port."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.transport.client import FederationClient
from gateway.trust.credentials import Credentials
from tests.chaos.crashcase import all_succeeded, crash_workload, provoke
from tests.chaos.crashpoints import POINTS
from tests.chaos.fleet import GatewayFleet, free_port
from tests.chaos.invariants import check_federation
from tests.chaos.sites import TENANT, ChaosAgent
from tests.integration.harness import Pki
from tests.waiting import eventually

pytestmark = pytest.mark.services

LEADER_LEASE_S = 2  # short, so that each case resolves in seconds (the default is 6 s)


@dataclass
class Pair:
    """What agents dial: both gateways' addresses (`AgentProcess` writes them as a list)."""

    pki: Pki
    address: str


@pytest.mark.parametrize("point", POINTS)
def test_the_leader_killed_at_a_crash_point_is_replaced_by_its_standby_and_nothing_is_lost(
    point: str, pki: Pki, tmp_path: Path, pg_url: str
) -> None:
    fleet = GatewayFleet(pki, tmp_path / "fleet", pg_url, leader_lease_s=LEADER_LEASE_S)
    agents: list[ChaosAgent] = []
    try:
        # A replica loads the policy once as a standby and once when it leads: the reload is the third load.
        leader = fleet.start(crash=point, crash_after=2 if point == "mid-policy-reload" else 1)
        standby_port = free_port()
        fleet.start(port=standby_port)
        pair = Pair(pki, f"{fleet.address},127.0.0.1:{standby_port}")
        agents = [ChaosAgent(pair, tmp_path / site, site, cards=2) for site in ("centre-a", "centre-b")]

        def client(creds: Path) -> FederationClient:
            return FederationClient(pair.address, Credentials.from_dir(creds), timeout=3)

        with client(pki.user(TENANT, "alice")) as alice, client(pki.admin()) as admin:
            work = crash_workload(point, alice)
            for agent in agents:
                agent.start()
            provoke(point, leader, alice, fleet.logs)
            eventually(
                lambda: not leader.alive(), timeout=30, what=f"the leader to crash at {point}", detail=fleet.logs
            )
            assert leader.process.returncode == -signal.SIGKILL and fleet.crash_mark.read_text() == point
            acknowledged = {k: v for w in work for k, v in w.join().items()}
            outcome = check_federation(fleet.store_url, acknowledged, admin, agents)
            all_succeeded(work, outcome)
            assert fleet.current.alive(), "the standby leads on; nothing was restarted"
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{fleet.logs()}\n" + "\n".join(a.tail() for a in agents)) from None
    finally:
        for agent in agents:
            agent.end()
        fleet.close()
