"""Cross-site gangs: completed two-phase reservation rounds a second, each gang spanning 3 sites.

What runs: the real gateway (`fedgate gateway run`, its own process, fresh SQLite store,
`policies/federation.yaml`), 60 real agents on the simulated backend in one process of their own
(`bench.agenthost`, each its own site certificate and mTLS connection, one node of 8 ascend-910b cards), and the
client in this process: 40 closed-loop submitters as alice, each sending a gang job of 24 cards with
`topology: {max_sites: 3, min_cards_per_site: 8}` (no site holds 24, so every gang must take three whole sites;
simulated run time 0 s), then following it with WatchJob until it ends SUCCEEDED, then the next. 60 sites hold
20 gangs at once; the other 20 submitters' gangs wait in the queue, so the coordinator always has work.

Each gang that ends SUCCEEDED went through exactly one completed round (`gateway.gangs.coordinator`: RESERVING,
Reserve at each of its 3 sites one after the other, every agent's ReserveReply, Commit each, DISPATCHED with one
epoch, Launch each); a round a site refused sends the gang back to the queue and is not counted. Rounds/s =
gangs SUCCEEDED / wall time of the measured run (30 warm-up gangs, then 300). Beside it, per gang: create ->
start (`Job.start_time`: its parts all reported RUNNING), which includes any wait in the queue.
There is no baseline: nothing else in the system does two-phase holds. Target: >= 50 reservations/s.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench import fleet
from bench.load import CALL_TIMEOUT_S, RunResult, drive, secure_channel
from fedgate.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc

TARGET_PER_S = 50.0


@dataclass(frozen=True)
class Plan:
    sites: int = 60
    cards_per_site: int = 8
    sites_per_gang: int = 3
    gangs: int = 300
    warmup: int = 30
    concurrency: int = 40
    max_seconds: float | None = 60.0


@dataclass(frozen=True)
class GangsResult:
    plan: Plan
    run: RunResult  # per gang: CreateJob sent -> its watch ended with SUCCEEDED
    spans: list[int]  # sites each succeeded gang ran on (all must be sites_per_gang)
    to_start: dict[str, float]  # create -> all parts running: p50_ms, p99_ms, mean_ms, max_ms

    @property
    def rounds(self) -> int:
        return self.run.requests - self.run.errors

    @property
    def per_s(self) -> float:
        return self.rounds / self.run.seconds if self.run.seconds > 0 else 0.0

    @property
    def spans_ok(self) -> bool:
        return all(s == self.plan.sites_per_gang for s in self.spans)

    @property
    def met(self) -> bool:
        return self.run.errors == 0 and self.spans_ok and self.per_s >= TARGET_PER_S

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": asdict(self.plan),
            "run": asdict(self.run),
            "rounds": self.rounds,
            "reservations_per_s": self.per_s,
            "gangs_not_on_3_sites": sum(1 for s in self.spans if s != self.plan.sites_per_gang),
            "create_to_start": self.to_start,
            "target_per_s": TARGET_PER_S,
            "met": self.met,
        }

    def summary(self) -> dict[str, float | None]:
        return {"gangs.reservations_per_s": self.per_s if self.rounds else None}

    def render(self) -> str:
        p, r, s = self.plan, self.run, self.to_start
        rows = [
            ["row", "gangs", "rounds/s", "create->start p50 ms", "p99 ms", "errors", "target"],
            [
                f"gang over {p.sites_per_gang} sites",
                f"{self.rounds}" if not r.capped else f"{self.rounds} of {p.gangs}",
                f"{self.per_s:,.1f}",
                f"{s['p50_ms']:.1f}",
                f"{s['p99_ms']:.1f}",
                str(r.errors),
                f">= {TARGET_PER_S:g}/s: {fleet.verdict(self.met)}",
            ],
        ]
        head = (
            f"gangs: {p.concurrency} closed-loop submitters, gangs of {p.sites_per_gang} x {p.cards_per_site} cards on "
            f"{p.sites} simulated agents of {p.cards_per_site} cards ({p.warmup} warm-up); no baseline\n"
        )
        notes = []
        if not self.spans_ok:
            notes.append(
                f"{sum(1 for x in self.spans if x != p.sites_per_gang)} gangs did not span {p.sites_per_gang} sites"
            )
        if r.errors:
            notes.append(f"first error: {r.first_error}")
        return head + fleet.table(rows) + "".join(f"\n  {n}" for n in notes)


async def _load(address: str, pki: fleet.FleetPki, plan: Plan, tag: str) -> tuple[RunResult, list[job_pb2.Job]]:
    cards = plan.cards_per_site * plan.sites_per_gang
    spec = fleet.job_spec(0.0, cards=cards, topology=(plan.sites_per_gang, plan.cards_per_site))
    ended: list[job_pb2.Job] = []
    failures: list[str] = []
    async with secure_channel(address, pki.user) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)

        async def step(request: job_service_pb2.CreateJobRequest) -> None:
            created = await stub.CreateJob(request, timeout=CALL_TIMEOUT_S)
            job = created.job
            async for watched in stub.WatchJob(job_service_pb2.WatchJobRequest(job_id=job.job_id)):
                job = watched.job
            if job.state != job_pb2.JOB_STATE_SUCCEEDED:
                failures.append(f"gang {job.job_id} ended {job_pb2.JobState.Name(job.state)}")
            else:
                ended.append(job)

        warm = await drive(step, fleet.create_requests(spec, plan.warmup, f"{tag}-w"), plan.concurrency)
        if warm.errors or failures:
            raise RuntimeError(f"warm-up failed: {warm.first_error or failures[0]}")
        ended.clear()
        result = await drive(step, fleet.create_requests(spec, plan.gangs, tag), plan.concurrency, plan.max_seconds)
    if failures:
        result = replace(result, errors=result.errors + len(failures), first_error=result.first_error or failures[0])
    return result, ended


def measure(workdir: Path, progress: Callable[[str], None], plan: Plan, profile: Path | None = None) -> GangsResult:
    """One run; with `profile`, the gateway runs under cProfile into that file (its figures then mean little)."""
    pki = fleet.fleet_pki(workdir / "pki")
    run_dir = workdir / ("gangs-profiled" if profile else "gangs")
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    sites = fleet.site_names(plan.sites)
    for site in sites:
        pki.site(site)
    config = fleet.write_gateway_config(pki, run_dir)
    with (
        fleet.gateway_process(config, run_dir, profile) as gateway,
        fleet.agent_host_process(pki, run_dir, gateway.address, sites, plan.cards_per_site, 0.0),
    ):
        progress(f"gangs: waiting for {plan.sites} agents")
        asyncio.run(fleet.wait_for_sites(gateway.address, pki.admin, plan.sites))
        progress(f"gangs: {plan.warmup} + {plan.gangs} gangs, {plan.concurrency} in flight")
        result, jobs = asyncio.run(_load(gateway.address, pki, plan, f"g-{uuid.uuid4().hex[:8]}"))
    spans = [len({p.site for p in job.placements}) for job in jobs]
    starts = [
        (job.start_time.ToDatetime() - job.create_time.ToDatetime()).total_seconds()
        for job in jobs
        if job.HasField("start_time")
    ]
    return GangsResult(plan, result, spans, fleet.latency_figures(starts))


def run(workdir: Path, progress: Callable[[str], None]) -> GangsResult:
    return measure(workdir, progress, Plan())


if __name__ == "__main__":
    import argparse
    import sys
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m bench.gangs", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "fedgate-bench")
    parser.add_argument("--gangs", type=int, default=Plan.gangs)
    parser.add_argument("--sites", type=int, default=Plan.sites)
    parser.add_argument("--concurrency", type=int, default=Plan.concurrency)
    parser.add_argument("--profile", type=int, default=0, metavar="TOP", help="also profile one run; print TOP rows")
    options = parser.parse_args()
    chosen = Plan(gangs=options.gangs, sites=options.sites, concurrency=options.concurrency)
    say = functools.partial(print, file=sys.stderr)
    print(measure(options.workdir, say, chosen).render())
    if options.profile:
        say("gangs: one more run with the gateway under cProfile (not a figure)")
        out = options.workdir / "gangs-gateway.prof"
        profiled = measure(options.workdir, say, chosen, out)
        print(f"profiled run (slowed by the profiler): {profiled.per_s:.1f} rounds/s")
        print(fleet.profile_text(out, options.profile))
