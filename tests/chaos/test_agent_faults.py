"""kill -9 and SIGSTOP of real agent processes (local backend) while their jobs run.

- killed and back within the lease: the restarted agent adopts its running jobs; each runs once, at epoch 1;
- killed and back after the lease: its attempts are LOST and run again at the other site (the wrapper fenced
  the old ones first); the agent comes back to a federation that runs nothing twice;
- stopped (SIGSTOP) past the lease and resumed: as above, and the resumed agent never runs an attempt beside
  its replacement.
Then the shared invariants.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from gateway.jobs.model import Job, JobState
from tests.chaos.fleet import GatewayFleet
from tests.chaos.invariants import check_federation
from tests.chaos.sites import TENANT, ChaosAgent, Submitters, beating_job
from tests.integration.harness import Pki
from tests.waiting import eventually


@pytest.mark.parametrize("fault", ["kill, back within the lease", "kill, back after the lease", "stop past the lease"])
def test_an_agent_killed_or_stopped_mid_run_loses_nothing_and_never_runs_a_job_twice_at_once(
    fault: str, fleet: GatewayFleet, pki: Pki, tmp_path: Path
) -> None:
    if fault == "kill, back within the lease":
        # The fence stops a killed agent's jobs half a lease after its last renewal; an agent process takes 1-3 s
        # to start again on a busy 2-core machine, so this case gets a lease long enough to adopt them.
        fleet.settings["site_lease_s"] = 10
    fleet.start()
    a, b = (ChaosAgent(fleet, tmp_path / site, site, cards=2) for site in ("centre-a", "centre-b"))
    try:
        with fleet.client(pki.user(TENANT, "alice")) as alice, fleet.client(pki.admin()) as admin:
            a.start()
            work = Submitters(alice, beating_job(3), threads=2, per_thread=1).start()
            eventually(lambda: running_at(alice.list_jobs(), "centre-a") == 2, timeout=30, what="two jobs at a")
            b.start()
            if fault == "kill, back within the lease":
                a.kill()
                a.start()
            else:
                a.signal(signal.SIGKILL if fault.startswith("kill") else signal.SIGSTOP)
                eventually(
                    lambda: running_at(alice.list_jobs(), "centre-b") == 2,
                    timeout=30,
                    what="both jobs run again at b",
                    detail=fleet.logs,
                )
                if fault.startswith("kill"):
                    a.process.wait(10)  # type: ignore[union-attr]
                    a.start()
                else:
                    a.signal(signal.SIGCONT)
            outcome = check_federation(fleet.store_url, work.join(), admin, [a, b])
            assert all(job.state == JobState.SUCCEEDED for job in outcome.jobs.values())
            lost = {j: [e for e in events if e.state == JobState.LOST] for j, events in outcome.events.items()}
            if fault == "kill, back within the lease":
                assert all(job.epoch == 1 for job in outcome.jobs.values()), "an adopted job ran again"
            else:
                assert all(len(events) == 1 and events[0].site == "centre-a" for events in lost.values()), lost
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{fleet.logs()}\n{a.tail()}\n{b.tail()}") from None
    finally:
        a.end()
        b.end()


def running_at(jobs: list[Job], site: str) -> int:
    return sum(1 for job in jobs if job.state == JobState.RUNNING and job.sites == (site,))
