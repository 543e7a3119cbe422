"""The disk under a SQLite store fills up while jobs flow: admission is refused (STORE_FULL, retried by the
submitters), the agents' updates that cannot be made durable stay in their journals and are replayed, and once
an operator frees space everything settles with the shared invariants. The gateway runs in a private user and
mount namespace over a 8 MiB tmpfs (`unshare`, as in tests/e2e/test_store_safety.py), so the full disk is real
and bites root too, and the machine's mounts are left alone."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from gateway.jobs.model import JobState
from tests.chaos.fleet import GatewayFleet
from tests.chaos.invariants import check_federation
from tests.chaos.sites import TENANT, ChaosAgent, Submitters, beating_job
from tests.e2e.test_store_safety import namespace_prefix
from tests.integration.harness import Pki
from tests.waiting import eventually


def fill(directory: Path) -> Path:
    """Write zeros into `directory` until its disk is full; returns the file (delete it to free the space)."""
    ballast = directory / "ballast"
    with ballast.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\x00" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return ballast


def test_a_full_disk_under_the_store_while_jobs_flow_loses_nothing_once_space_is_back(pki: Pki, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    prefix = namespace_prefix(f"mount -t tmpfs -o size=8m tmpfs {disk}")
    fleet = GatewayFleet(pki, tmp_path / "fleet", f"sqlite:///{disk}/gateway.db", prefix=prefix)
    agents: list[ChaosAgent] = []
    try:
        member = fleet.start()
        inside = Path(f"/proc/{member.process.pid}/root") / str(disk).lstrip("/")  # the tmpfs, seen from here
        agents = [ChaosAgent(fleet, tmp_path / site, site, cards=2) for site in ("centre-a", "centre-b")]
        with fleet.client(pki.user(TENANT, "alice"), timeout=3) as alice, fleet.client(pki.admin()) as admin:
            for agent in agents:
                agent.start()
            work = Submitters(alice, beating_job(0.3), threads=2, per_thread=8).start()
            eventually(lambda: len(work.acknowledged) >= 3, timeout=30, what="jobs admitted", detail=fleet.logs)
            ballast = fill(inside)
            eventually(
                lambda: "database or disk is full" in member.tail(20_000),
                timeout=30,
                what="the gateway to meet the full disk",
                detail=fleet.logs,
            )
            ballast.unlink()  # an operator frees space
            acknowledged = work.join()
            eventually(
                lambda: all(admin.get_job(j).state.terminal for j in acknowledged.values()),
                timeout=60,
                what="every acknowledged job to end",
                detail=fleet.logs,
            )
            # SQLite resolves the /proc/<pid>/root link to the path outside the namespace, so the check reads a
            # copy of the settled store (the database, its WAL and its index) taken through the link.
            copy = tmp_path / "settled"
            copy.mkdir()
            for name in ("gateway.db", "gateway.db-wal", "gateway.db-shm"):
                if (inside / name).exists():
                    shutil.copyfile(inside / name, copy / name)
            outcome = check_federation(f"sqlite:///{copy}/gateway.db", acknowledged, admin, agents)
            assert len(acknowledged) == 16
            assert all(job.state == JobState.SUCCEEDED for job in outcome.jobs.values()), {
                j.job_id: j.state.value for j in outcome.jobs.values()
            }
            assert member.alive(), "the gateway rode the full disk out without a restart"
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{fleet.logs()}\n" + "\n".join(a.tail() for a in agents)) from None
    finally:
        for agent in agents:
            agent.end()
        fleet.close()
