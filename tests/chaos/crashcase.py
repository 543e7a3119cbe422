"""One crash case, the same whether a restart or a standby replaces the crashed gateway: the workload that
reaches each crash point, what provokes the points the workload alone does not, and the check after the shared
invariants (every request acknowledged once, every job succeeded).

Owns: `crash_workload`, `provoke` and `all_succeeded`, used by `test_gateway_crashes.py` (restart on the same
store) and `test_leader_failover.py` (the standby takes over). It starts no process and kills none.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

from gateway.jobs.model import JobState
from gateway.transport.client import FederationClient
from tests.chaos.fleet import GatewayProcess
from tests.chaos.invariants import Outcome
from tests.chaos.sites import Submitters, beating_job
from tests.waiting import eventually


def crash_workload(point: str, alice: FederationClient) -> list[Submitters]:
    """The jobs a crash case submits: gangs over both sites for the gang point (two cards at each of two
    sites), single-card jobs otherwise; started, retrying their request ids through the crash."""
    if point == "mid-gang-reservation":
        return [Submitters(alice, beating_job(0.5, cards=4, gang=True), threads=1, per_thread=2).start()]
    return [Submitters(alice, beating_job(0.5), threads=2, per_thread=3).start()]


def provoke(point: str, member: GatewayProcess, alice: FederationClient, logs: Callable[[], str]) -> None:
    """What makes the gateway reach the point beyond the workload: a SIGHUP once a job runs, for the reload."""
    if point == "mid-policy-reload":
        eventually(
            lambda: any(j.state == JobState.RUNNING for j in alice.list_jobs()),
            timeout=30,
            what="a job running",
            detail=logs,
        )
        member.process.send_signal(signal.SIGHUP)


def all_succeeded(work: list[Submitters], outcome: Outcome) -> None:
    """Every request was acknowledged once and every job succeeded (after the shared invariants held)."""
    acknowledged = {k for w in work for k in w.acknowledged}
    assert len(acknowledged) == sum(w.threads * w.per_thread for w in work)
    assert all(job.state == JobState.SUCCEEDED for job in outcome.jobs.values()), {
        j.job_id: j.state.value for j in outcome.jobs.values()
    }
