"""End-to-end throughput: jobs a second from CreateJob to SUCCEEDED, through a real gateway and real agents.

What runs: the real gateway (`fedgate gateway run`, its own process, fresh SQLite store,
`policies/federation.yaml`), 50 real agents on the simulated backend in one process of their own
(`bench.agenthost`, each its own site certificate and mTLS connection, 16 ascend-910b cards each: 800 cards for
at most 128 jobs alive at once, so nothing waits for capacity), and the client in this process: 128 closed-loop
submitters on one mTLS channel as alice, each sending a CreateJob (1 card, simulated run time 0 s), then
following the job with WatchJob until its stream ends with the job SUCCEEDED, then the next. 200 warm-up jobs,
then 2,000 measured; jobs/s = measured jobs / wall time of the measured run.

Baseline in the same run: admission alone, the same gateway config in a fresh process with no agents and the
same client (same channel, the same 128 in flight, CreateJob only: the jobs stay QUEUED).
Target: >= 500 jobs/s end to end.

`python -m bench.end_to_end --profile` adds one more, unreported run with the gateway under
`python -m cProfile -o` and prints where the gateway's main thread spends its time (the group commit's writer
thread is not in the profile).
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

TARGET_JOBS_PER_S = 500.0


@dataclass(frozen=True)
class Plan:
    sites: int = 50
    cards_per_site: int = 16
    jobs: int = 2000
    warmup: int = 200
    concurrency: int = 128
    max_seconds: float | None = 60.0  # no new job starts after this long; the ones in flight finish


@dataclass(frozen=True)
class EndToEndResult:
    plan: Plan
    end_to_end: RunResult  # per job: CreateJob sent -> its watch ended with SUCCEEDED
    admission: RunResult  # the baseline: CreateJob alone, no agents

    @property
    def jobs_per_s(self) -> float:
        return self.end_to_end.rps

    @property
    def met(self) -> bool:
        return self.end_to_end.errors == 0 and self.jobs_per_s >= TARGET_JOBS_PER_S

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": asdict(self.plan),
            "end_to_end": {**asdict(self.end_to_end), "jobs_per_s": self.end_to_end.rps},
            "admission_alone": {**asdict(self.admission), "jobs_per_s": self.admission.rps},
            "target_jobs_per_s": TARGET_JOBS_PER_S,
            "met": self.met,
        }

    def summary(self) -> dict[str, float | None]:
        return {"end_to_end.jobs_per_s": self.jobs_per_s if self.end_to_end.requests else None}

    def render(self) -> str:
        e, a, p = self.end_to_end, self.admission, self.plan
        share = f"{e.rps / a.rps:.0%}" if a.rps else "-"
        rows = [
            ["row", "jobs", "jobs/s", "p50 ms", "p99 ms", "errors", "vs admission", "target"],
            [
                "end to end (submit -> SUCCEEDED)",
                _jobs(e, p),
                f"{e.rps:,.0f}",
                f"{e.p50_ms:.1f}",
                f"{e.p99_ms:.1f}",
                str(e.errors),
                share,
                f">= {TARGET_JOBS_PER_S:,.0f}/s: {fleet.verdict(self.met)}",
            ],
            [
                "admission alone (no agents)",
                _jobs(a, p),
                f"{a.rps:,.0f}",
                f"{a.p50_ms:.1f}",
                f"{a.p99_ms:.1f}",
                str(a.errors),
                "100%",
                "baseline",
            ],
        ]
        head = (
            f"end_to_end: {p.concurrency} closed-loop submitters, {p.sites} simulated agents x {p.cards_per_site} "
            f"cards, jobs of 0 s ({p.warmup} warm-up)\n"
        )
        errors = f"\n  first error: {e.first_error or a.first_error}" if e.errors or a.errors else ""
        return head + fleet.table(rows) + errors


def _jobs(result: RunResult, plan: Plan) -> str:
    return f"{result.requests}" if not result.capped else f"{result.requests} of {plan.jobs}"


def submit_and_follow(stub: job_service_pb2_grpc.JobServiceStub, failures: list[str]) -> Callable[[Any], Any]:
    """One closed-loop step: create the job, then follow it until its watch ends. A job that ends otherwise
    than SUCCEEDED is added to `failures` (gRPC errors are counted by `bench.load.drive`)."""

    async def step(request: job_service_pb2.CreateJobRequest) -> None:
        created = await stub.CreateJob(request, timeout=CALL_TIMEOUT_S)
        state = created.job.state
        async for watched in stub.WatchJob(job_service_pb2.WatchJobRequest(job_id=created.job.job_id)):
            state = watched.job.state
        if state != job_pb2.JOB_STATE_SUCCEEDED:
            failures.append(f"job {created.job.job_id} ended {job_pb2.JobState.Name(state)}")

    return step


async def _load(address: str, pki: fleet.FleetPki, plan: Plan, tag: str, follow: bool) -> RunResult:
    spec = fleet.job_spec(0.0)
    warm, measured = fleet.create_requests(spec, plan.warmup, f"{tag}-w"), fleet.create_requests(spec, plan.jobs, tag)
    failures: list[str] = []
    async with secure_channel(address, pki.user) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        call = (
            submit_and_follow(stub, failures) if follow else functools.partial(stub.CreateJob, timeout=CALL_TIMEOUT_S)
        )
        warmed = await drive(call, warm, plan.concurrency)
        if warmed.errors or failures:
            raise RuntimeError(f"warm-up failed: {warmed.first_error or failures[0]}")
        result = await drive(call, measured, plan.concurrency, plan.max_seconds)
    if not failures:
        return result
    return replace(result, errors=result.errors + len(failures), first_error=result.first_error or failures[0])


def _end_to_end_run(
    pki: fleet.FleetPki, run_dir: Path, plan: Plan, progress: Callable[[str], None], profile: Path | None = None
) -> RunResult:
    sites = fleet.site_names(plan.sites)
    config = fleet.write_gateway_config(pki, run_dir)
    with (
        fleet.gateway_process(config, run_dir, profile) as gateway,
        fleet.agent_host_process(pki, run_dir, gateway.address, sites, plan.cards_per_site, 0.0),
    ):
        progress(f"end_to_end: waiting for {plan.sites} agents")
        asyncio.run(fleet.wait_for_sites(gateway.address, pki.admin, plan.sites))
        progress(f"end_to_end: {plan.warmup} + {plan.jobs} jobs, {plan.concurrency} in flight")
        return asyncio.run(_load(gateway.address, pki, plan, f"e-{uuid.uuid4().hex[:8]}", follow=True))


def measure(
    workdir: Path, progress: Callable[[str], None], plan: Plan, profile_top: int = 0
) -> tuple[EndToEndResult, str]:
    """The two measured runs; with `profile_top`, then one more end-to-end run under cProfile (not reported as
    a figure) whose top entries come back as text."""
    pki = fleet.fleet_pki(workdir / "pki")
    root = workdir / "end_to_end"
    shutil.rmtree(root, ignore_errors=True)
    for name in ("e2e", "admission", "profiled"):
        (root / name).mkdir(parents=True)
    for site in fleet.site_names(plan.sites):
        pki.site(site)
    e2e = _end_to_end_run(pki, root / "e2e", plan, progress)
    progress("end_to_end: baseline, admission alone (fresh gateway, no agents, same client)")
    with fleet.gateway_process(fleet.write_gateway_config(pki, root / "admission"), root / "admission") as gateway:
        admission = asyncio.run(_load(gateway.address, pki, plan, f"a-{uuid.uuid4().hex[:8]}", follow=False))
    text = ""
    if profile_top:
        progress("end_to_end: one more run with the gateway under cProfile (not a figure)")
        out = root / "profiled" / "gateway.prof"
        profiled = _end_to_end_run(pki, root / "profiled", plan, progress, out)
        text = f"profiled run (slowed by the profiler): {profiled.rps:,.0f} jobs/s\n"
        text += fleet.profile_text(out, profile_top)
    return EndToEndResult(plan, e2e, admission), text


def run(workdir: Path, progress: Callable[[str], None]) -> EndToEndResult:
    return measure(workdir, progress, Plan())[0]


if __name__ == "__main__":
    import argparse
    import sys
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m bench.end_to_end", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "fedgate-bench")
    parser.add_argument("--jobs", type=int, default=Plan.jobs)
    parser.add_argument("--concurrency", type=int, default=Plan.concurrency)
    parser.add_argument("--profile", type=int, default=0, metavar="TOP", help="also profile one run; print TOP rows")
    options = parser.parse_args()
    chosen = Plan(jobs=options.jobs, concurrency=options.concurrency)
    result, profile = measure(options.workdir, lambda line: print(line, file=sys.stderr), chosen, options.profile)
    print(result.render())
    if profile:
        print(profile)
