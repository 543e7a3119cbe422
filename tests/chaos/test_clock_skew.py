"""Clock skew between the gateway and a site: the agent's wall clock shifted by +/- 2 minutes (a sitecustomize
on the agent process's PYTHONPATH shifts `time.time` and `datetime.now`; monotonic and boot-time clocks, which
leases and fences use, are not wall clocks and stay as they are).

The tolerance: leases are judged on the gateway's own monotonic clock and fences on the site's CLOCK_BOOTTIME,
so no wall-clock skew changes them; a usage receipt may end at most 5 minutes (`MAX_CLOCK_SKEW`) after the
gateway's now, so within that every ended attempt keeps its receipt, stamped with the site's clock.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.jobs.model import JobState
from tests.chaos.fleet import GatewayFleet
from tests.chaos.invariants import check_federation
from tests.chaos.sites import TENANT, ChaosAgent, Submitters, beating_job
from tests.integration.harness import Pki

SKEWED_CLOCK = '''
"""Loaded by a chaos test's agent process only (PYTHONPATH): its wall clock runs FEDGATE_CHAOS_CLOCK_SKEW_S off."""
import datetime as _datetime
import os
import time as _time

_OFFSET = float(os.environ["FEDGATE_CHAOS_CLOCK_SKEW_S"])
_real_time, _real_time_ns, _Real = _time.time, _time.time_ns, _datetime.datetime


class _Skewed(_Real):
    @classmethod
    def now(cls, tz=None):
        return _Real.fromtimestamp(_real_time() + _OFFSET, tz)

    @classmethod
    def utcnow(cls):
        return _Real.utcfromtimestamp(_real_time() + _OFFSET)


_time.time = lambda: _real_time() + _OFFSET
_time.time_ns = lambda: _real_time_ns() + int(_OFFSET * 1e9)
_datetime.datetime = _Skewed
'''


@pytest.mark.parametrize("skew_s", [120.0, -120.0], ids=["site ahead 2 min", "site behind 2 min"])
def test_a_site_whose_clock_is_minutes_off_runs_each_job_once_with_one_receipt(
    skew_s: float, fleet: GatewayFleet, pki: Pki, tmp_path: Path
) -> None:
    inject = tmp_path / "skew"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(SKEWED_CLOCK)
    env = {
        "FEDGATE_CHAOS_CLOCK_SKEW_S": str(skew_s),
        "PYTHONPATH": os.pathsep.join(p for p in (str(inject), os.environ.get("PYTHONPATH", "")) if p),
    }
    fleet.start()
    agent = ChaosAgent(fleet, tmp_path / "centre-a", "centre-a", cards=2, env=env)
    try:
        with fleet.client(pki.user(TENANT, "alice")) as alice, fleet.client(pki.admin()) as admin:
            agent.start()
            work = Submitters(alice, beating_job(1), threads=2, per_thread=2).start()
            outcome = check_federation(fleet.store_url, work.join(), admin, [agent])
            assert all(job.state == JobState.SUCCEEDED for job in outcome.jobs.values())
            for settled in outcome.receipts:  # stamped with the site's clock: the skew was real
                assert settled.record is not None
                off = (settled.record.end_time - settled.settle_time).total_seconds()
                assert abs(off - skew_s) < 30, f"receipt ends {off:.0f} s from its settlement, skew {skew_s}"
            assert len(outcome.receipts) == len(outcome.jobs)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{fleet.logs()}\n{agent.tail()}") from None
    finally:
        agent.end()
