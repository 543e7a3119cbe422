"""kill -9 of the gateway at named crash points (tests/chaos/crashpoints.py), then a restart on the same store.

Each case: retrying submitters (fixed request ids) and two agent processes work through a gateway process armed
to kill itself at the point; once it has, a fresh gateway starts on the same store and port, the clients retry,
the agents reconnect, and the shared invariants are checked (acknowledged = the requests that got a reply).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from gateway.jobs.model import JobState
from tests.chaos.crashpoints import POINTS
from tests.chaos.fleet import GatewayFleet
from tests.chaos.invariants import check_federation
from tests.chaos.sites import TENANT, ChaosAgent, Submitters, beating_job
from tests.integration.harness import Pki
from tests.waiting import eventually


@pytest.mark.parametrize("point", POINTS)
def test_a_gateway_killed_at_a_crash_point_loses_no_acknowledged_job_and_runs_each_once(
    point: str, fleet: GatewayFleet, pki: Pki, tmp_path: Path
) -> None:
    fleet.start(crash=point)
    agents = [ChaosAgent(fleet, tmp_path / site, site, cards=2) for site in ("centre-a", "centre-b")]
    try:
        with fleet.client(pki.user(TENANT, "alice")) as alice, fleet.client(pki.admin()) as admin:
            # Jobs are queued before the sites come, so that the first cycle dispatches several at once.
            if point == "mid-gang-reservation":  # four cards: two at each site, so every gang spans both
                work = [Submitters(alice, beating_job(0.5, cards=4, gang=True), threads=1, per_thread=2).start()]
            else:
                work = [Submitters(alice, beating_job(0.5), threads=2, per_thread=3).start()]
            for agent in agents:
                agent.start()
            if point == "mid-policy-reload":
                eventually(
                    lambda: any(j.state == JobState.RUNNING for j in alice.list_jobs()),
                    timeout=30,
                    what="a job running",
                    detail=fleet.logs,
                )
                fleet.current.process.send_signal(signal.SIGHUP)
            fleet.wait_crashed(point)
            fleet.restart()
            acknowledged = {k: v for w in work for k, v in w.join().items()}
            outcome = check_federation(fleet.store_url, acknowledged, admin, agents)
            assert len(acknowledged) == sum(w.threads * w.per_thread for w in work)
            assert all(job.state == JobState.SUCCEEDED for job in outcome.jobs.values()), {
                j.job_id: j.state.value for j in outcome.jobs.values()
            }
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{fleet.logs()}\n" + "\n".join(a.tail() for a in agents)) from None
    finally:
        for agent in agents:
            agent.end()
