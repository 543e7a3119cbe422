"""PostgreSQL restarted (pg_ctl restart, fast: open transactions rolled back) under a gateway process while
retrying submitters and two agents keep jobs flowing; then the shared invariants, read from PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.jobs.model import JobState
from tests.chaos.fleet import GatewayFleet
from tests.chaos.invariants import check_federation
from tests.chaos.sites import TENANT, ChaosAgent, Submitters, beating_job
from tests.integration.harness import Pki
from tests.pgserver import PgServer
from tests.waiting import eventually


@pytest.fixture
def pg_fleet(pki: Pki, tmp_path: Path, pg_url: str) -> Iterator[GatewayFleet]:
    made = GatewayFleet(pki, tmp_path / "fleet", pg_url)
    yield made
    made.close()


def test_postgresql_restarted_under_load_loses_no_acknowledged_job_and_runs_each_once(
    pg_fleet: GatewayFleet, pg_server: PgServer, pki: Pki, tmp_path: Path
) -> None:
    fleet = pg_fleet
    fleet.start()
    agents = [ChaosAgent(fleet, tmp_path / site, site, cards=2) for site in ("centre-a", "centre-b")]
    try:
        with fleet.client(pki.user(TENANT, "alice")) as alice, fleet.client(pki.admin()) as admin:
            for agent in agents:
                agent.start()
            work = Submitters(alice, beating_job(1), threads=2, per_thread=4).start()
            eventually(
                lambda: any(j.state == JobState.RUNNING for j in alice.list_jobs()),
                timeout=30,
                what="a job running",
                detail=fleet.logs,
            )
            pg_server.restart("fast")
            outcome = check_federation(fleet.store_url, work.join(), admin, agents)
            assert all(job.state == JobState.SUCCEEDED for job in outcome.jobs.values())
            assert fleet.current.alive(), "the gateway did not survive the restart of its database"
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{fleet.logs()}\n" + "\n".join(a.tail() for a in agents)) from None
    finally:
        for agent in agents:
            agent.end()
