"""Gateway memory: the gateway process's resident set with 1,000 sites connected and 100,000 jobs in its store.

What runs: the real gateway (`fedgate gateway run`, its own process, SQLite, `policies/federation.yaml`).
Setup, not timed: 100,000 jobs of deepsea-ai/llama-sft written straight into the store file with the store's
bulk API (`store.create_jobs`, batches of 10,000) before the gateway starts: 90,000 ended (70,000 SUCCEEDED,
10,000 FAILED, 10,000 CANCELLED, each with its start and end, placed on one of the sites) and 10,000 QUEUED
(1 ascend-910b card each). The populated file is kept in `workdir/memory` and copied for each run.
Then 1,000 sites really connect: `bench.sitestreams` (generated stubs, no agent), each its own mTLS channel and
site certificate (shared with `bench.ingest`), Hello and one full capacity report of 16 cards; the gateway
dispatches the queued jobs to them (the streams read the Launches and never answer, so those jobs stay
DISPATCHED: active jobs of both kinds). After every site is listed as connected, 5 s more (five scheduling
periods, report and liveness checks), then VmRSS and VmHWM from /proc/<pid>/status of the gateway process.

Baseline in the same run: the same gateway with an empty store and no sites, read 3 s after it was ready.
Target: VmRSS < 500 MB with the load.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import fleet, sitestreams
from gateway.jobs.model import Job, JobEvent, JobSpec, JobState, Placement, Resources, StackRun
from gateway.store import open_store

TARGET_MB = 500.0
SETTLE_S = 5.0  # after every site is connected: a few scheduling cycles before the reading
EMPTY_SETTLE_S = 3.0
BATCH = 10_000


@dataclass(frozen=True)
class Plan:
    sites: int = 1000
    jobs: int = 100_000
    queued_share: float = 0.1  # the rest ended


@dataclass(frozen=True)
class Memory:
    """One reading of /proc/<pid>/status, in MB (MiB, as the kernel's kB are KiB)."""

    rss_mb: float  # VmRSS
    peak_mb: float  # VmHWM: the most the process ever held resident


def read_memory(status_text: str) -> Memory:
    """VmRSS and VmHWM of a /proc/<pid>/status text."""
    fields = {}
    for line in status_text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return Memory(fields["VmRSS"], fields["VmHWM"])


def process_memory(pid: int) -> Memory:
    return read_memory(Path(f"/proc/{pid}/status").read_text())


@dataclass(frozen=True)
class MemoryResult:
    plan: Plan
    empty: Memory  # the baseline: empty store, no sites
    loaded: Memory  # 100,000 jobs and 1,000 sites connected, after a few cycles
    sites_connected: int
    jobs_by_state: dict[str, int]  # what the store held when the gateway stopped

    @property
    def met(self) -> bool:
        return self.sites_connected == self.plan.sites and self.loaded.rss_mb < TARGET_MB

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": asdict(self.plan),
            "empty": asdict(self.empty),
            "loaded": asdict(self.loaded),
            "sites_connected": self.sites_connected,
            "jobs_by_state": self.jobs_by_state,
            "target_mb": TARGET_MB,
            "met": self.met,
        }

    def summary(self) -> dict[str, float | None]:
        return {"memory.gateway_rss_mb": self.loaded.rss_mb}

    def render(self) -> str:
        p = self.plan
        rows = [
            ["gateway", "VmRSS MB", "VmHWM MB", "target"],
            [
                f"{p.jobs:,} jobs, {self.sites_connected:,} sites connected",
                f"{self.loaded.rss_mb:.1f}",
                f"{self.loaded.peak_mb:.1f}",
                f"< {TARGET_MB:g} MB: {fleet.verdict(self.met)}",
            ],
            ["empty store, no sites (baseline)", f"{self.empty.rss_mb:.1f}", f"{self.empty.peak_mb:.1f}", "baseline"],
        ]
        states = ", ".join(f"{k} {v:,}" for k, v in sorted(self.jobs_by_state.items()))
        return f"memory: gateway process RSS\n{fleet.table(rows)}\n  store when the gateway stopped: {states}"


def populate(db: Path, plan: Plan, sites: list[str], seed: int = 1) -> None:
    """Write `plan.jobs` jobs into a fresh store at `db` (the mix in the module docstring)."""
    rng = random.Random(seed)
    store = open_store(f"sqlite:///{db}")
    start = datetime.now(UTC) - timedelta(days=7)
    queued = int(plan.jobs * plan.queued_share)
    ended_states = [JobState.SUCCEEDED] * 7 + [JobState.FAILED, JobState.CANCELLED]
    try:
        batch: list[tuple[Job, JobEvent]] = []
        for i in range(plan.jobs):
            spec = JobSpec(
                tenant=fleet.TENANT,
                project=fleet.PROJECT,
                resources=Resources(accelerator_class=fleet.ACCELERATOR_CLASS, cards=rng.choice((1, 1, 2, 4, 8))),
                runs=(StackRun(fleet.STACK, "", ("python", "train.py", f"--run={i}")),),
                name=f"bench-{i}",
                labels=((fleet.DURATION_LABEL, "600"),),
            )
            created = start + timedelta(seconds=i * 5)
            if i < plan.jobs - queued:
                state = rng.choice(ended_states)
                began, ended = created + timedelta(seconds=30), created + timedelta(seconds=30 + rng.randint(60, 3600))
                site = rng.choice(sites)
                job = Job(
                    f"mem-{i:06d}",
                    spec,
                    state,
                    created,
                    ended,
                    request_id=f"m{i}",
                    owner="alice",
                    attempt=1,
                    epoch=1,
                    placements=(Placement(site, fleet.ACCELERATOR_CLASS, spec.resources.cards),),
                    exit_code=0 if state == JobState.SUCCEEDED else 1,
                    start_time=began,
                    end_time=ended,
                )
                event = JobEvent(job.job_id, state, ended, 1, site, "ended")
            else:
                job = Job(f"mem-{i:06d}", spec, JobState.QUEUED, created, created, request_id=f"m{i}", owner="alice")
                event = JobEvent(job.job_id, JobState.QUEUED, created, 0, "", "admitted")
            batch.append((job, event))
            if len(batch) == BATCH:
                store.create_jobs(batch)
                batch = []
        if batch:
            store.create_jobs(batch)
    finally:
        store.close()


def _store_counts(db: Path) -> dict[str, int]:
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {str(state): int(n) for state, n in conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")}


async def _connect_and_wait(
    address: str, pki: fleet.FleetPki, sites: list[tuple[str, Path]]
) -> tuple[list[sitestreams.SiteStream], int]:
    streams = await sitestreams.open_streams(address, sites)
    report = sitestreams.capacity_reports(1, fleet.ACCELERATOR_CLASS, 16)
    await asyncio.gather(*(s.write_all(report) for s in streams))
    await fleet.wait_for_sites(address, pki.admin, len(sites))
    await asyncio.sleep(SETTLE_S)
    connected = len(await fleet.connected_sites(address, pki.admin))
    return streams, connected


def measure(workdir: Path, progress: Callable[[str], None], plan: Plan) -> MemoryResult:
    pki = fleet.fleet_pki(workdir / "pki")
    root = workdir / "memory"
    names = fleet.site_names(plan.sites, "ingest")  # the same sites as bench.ingest: their certificates are cached
    progress(f"memory: certificates for {plan.sites} sites (cached in {pki.root / 'sites'})")
    sites = [(name, pki.site(name)) for name in names]
    template = root / f"template-{plan.jobs}-{plan.sites}.db"
    if not template.exists():
        root.mkdir(parents=True, exist_ok=True)
        progress(f"memory: writing {plan.jobs:,} jobs into {template} (once; setup, not measured)")
        began = time.perf_counter()
        partial = template.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        populate(partial, plan, names)
        partial.replace(template)
        progress(f"memory: populated in {time.perf_counter() - began:.0f} s")
    empty_dir, loaded_dir = root / "empty", root / "loaded"
    for d in (empty_dir, loaded_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    progress("memory: baseline, empty gateway")
    with fleet.gateway_process(fleet.write_gateway_config(pki, empty_dir), empty_dir) as gateway:
        time.sleep(EMPTY_SETTLE_S)
        empty = process_memory(gateway.pid)
    db = loaded_dir / "gw.db"
    shutil.copyfile(template, db)
    progress(f"memory: gateway over {plan.jobs:,} jobs, {plan.sites} sites connecting")
    with fleet.gateway_process(fleet.write_gateway_config(pki, loaded_dir, store=db), loaded_dir) as gateway:

        async def load() -> tuple[Memory, int]:
            streams, connected = await _connect_and_wait(gateway.address, pki, sites)
            reading = process_memory(gateway.pid)
            for stream in streams:
                await stream.close()
            return reading, connected

        loaded, connected = asyncio.run(load())
    return MemoryResult(plan, empty, loaded, connected, _store_counts(db))


def run(workdir: Path, progress: Callable[[str], None]) -> MemoryResult:
    return measure(workdir, progress, Plan())


if __name__ == "__main__":
    import argparse
    import sys
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "fedgate-bench")
    parser.add_argument("--jobs", type=int, default=Plan.jobs)
    parser.add_argument("--sites", type=int, default=Plan.sites)
    options = parser.parse_args()
    chosen = Plan(jobs=options.jobs, sites=options.sites)
    print(measure(options.workdir, lambda line: print(line, file=sys.stderr), chosen).render())
