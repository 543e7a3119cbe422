"""kill -9 of the gateway at named crash points (tests/chaos/crashpoints.py), then a restart on the same store.

Each case: retrying submitters (fixed request ids) and two agent processes work through a gateway process armed
to kill itself at the point; once it has, a fresh gateway starts on the same store and port, the clients retry,
the agents reconnect, and the shared invariants are checked (acknowledged = the requests that got a reply).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.crashcase import all_succeeded, crash_workload, provoke
from tests.chaos.crashpoints import POINTS
from tests.chaos.fleet import GatewayFleet
from tests.chaos.invariants import check_federation
from tests.chaos.sites import TENANT, ChaosAgent
from tests.integration.harness import Pki


@pytest.mark.parametrize("point", POINTS)
def test_a_gateway_killed_at_a_crash_point_loses_no_acknowledged_job_and_runs_each_once(
    point: str, fleet: GatewayFleet, pki: Pki, tmp_path: Path
) -> None:
    fleet.start(crash=point)
    agents = [ChaosAgent(fleet, tmp_path / site, site, cards=2) for site in ("centre-a", "centre-b")]
    try:
        with fleet.client(pki.user(TENANT, "alice")) as alice, fleet.client(pki.admin()) as admin:
            # Jobs are queued before the sites come, so that the first cycle dispatches several at once.
            work = crash_workload(point, alice)
            for agent in agents:
                agent.start()
            provoke(point, fleet.current, alice, fleet.logs)
            fleet.wait_crashed(point)
            fleet.restart()
            acknowledged = {k: v for w in work for k, v in w.join().items()}
            outcome = check_federation(fleet.store_url, acknowledged, admin, agents)
            all_succeeded(work, outcome)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{fleet.logs()}\n" + "\n".join(a.tail() for a in agents)) from None
    finally:
        for agent in agents:
            agent.end()
