"""Dispatch latency: how long from a user's CreateJob to the agent starting the job, under open-loop load.

What runs: the real gateway (`fedgate gateway run`, its own process, fresh SQLite store,
`policies/federation.yaml`), 100 real agents on the simulated backend in one process of their own
(`bench.agenthost`: each its own site certificate and mTLS connection; 16 ascend-910b cards each, 1,600 cards
for 1,050 jobs, so no job ever waits for capacity; jobs last 600 s, so none ends during the run), and the load
generator in this process: alice's CreateJob calls (1 card each) sent open loop at 100 jobs/s, each at its
due time whatever the earlier calls are doing, 50 warm-up jobs and then 1,000 measured ones.

What is measured, per job: `Job.start_time` minus the wall-clock time just before the client sent its
CreateJob. `start_time` is the time the agent put on its RUNNING update (the moment its backend had started
the attempt), which the gateway keeps unless it is before the dispatch or after the gateway heard of it
(`gateway.sites.dispatcher._start_time`). All processes share this machine's clock, so the difference covers
admission, the scheduling cycle, the Launch on the site stream and the agent's launch. Read back with
ListJobs once every job runs. Beside it: the CreateJob reply latency alone (admission), for scale.
Target: p99 < 250 ms.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import fleet
from bench.load import CALL_TIMEOUT_S, secure_channel
from fedgate.v1 import job_pb2, job_service_pb2_grpc

TARGET_P99_MS = 250.0


@dataclass(frozen=True)
class Plan:
    sites: int = 100
    cards_per_site: int = 16
    jobs: int = 1000
    warmup: int = 50
    rate_per_s: float = 100.0
    duration_s: float = 600.0  # simulated run time of each job: longer than the run, so no card comes back


@dataclass(frozen=True)
class DispatchResult:
    plan: Plan
    started: int  # measured jobs the gateway shows with a start time
    errors: int  # measured CreateJob calls that failed
    first_error: str
    offered_s: float  # how long the open loop took to send the measured jobs and get their replies
    max_lag_ms: float  # the pacer's worst lateness: large means the client, not the gateway, set the pace
    dispatch: dict[str, float]  # submit -> agent started: p50_ms, p99_ms, mean_ms, max_ms
    admission: dict[str, float]  # the CreateJob reply alone, same figures

    @property
    def met(self) -> bool:
        return self.started == self.plan.jobs and self.dispatch["p99_ms"] < TARGET_P99_MS

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": asdict(self.plan),
            "started": self.started,
            "errors": self.errors,
            "first_error": self.first_error,
            "offered_seconds": self.offered_s,
            "max_lag_ms": self.max_lag_ms,
            "dispatch": self.dispatch,
            "admission": self.admission,
            "target_p99_ms": TARGET_P99_MS,
            "met": self.met,
        }

    def summary(self) -> dict[str, float | None]:
        return {"dispatch.p99_ms": self.dispatch["p99_ms"] if self.started else None}

    def render(self) -> str:
        d, a, p = self.dispatch, self.admission, self.plan
        rows = [
            ["measure", "p50 ms", "p99 ms", "mean ms", "max ms", "target"],
            [
                "submit -> agent started",
                f"{d['p50_ms']:.1f}",
                f"{d['p99_ms']:.1f}",
                f"{d['mean_ms']:.1f}",
                f"{d['max_ms']:.1f}",
                f"p99 < {TARGET_P99_MS:g} ms: {fleet.verdict(self.met)}",
            ],
            [
                "CreateJob reply (admission)",
                f"{a['p50_ms']:.1f}",
                f"{a['p99_ms']:.1f}",
                f"{a['mean_ms']:.1f}",
                f"{a['max_ms']:.1f}",
                "none (for scale)",
            ],
        ]
        head = (
            f"dispatch: {p.jobs} jobs open loop at {p.rate_per_s:g}/s ({p.warmup} warm-up) onto {p.sites} simulated "
            f"agents x {p.cards_per_site} cards\n"
        )
        tail = (
            f"\n  {self.started} of {p.jobs} measured jobs started; {self.errors} CreateJob errors"
            f"{' (first: ' + self.first_error + ')' if self.errors else ''}; the last CreateJob reply came "
            f"{self.offered_s:.1f} s after the first send (schedule {p.jobs / p.rate_per_s:.1f} s); the pacer's worst "
            f"lag {self.max_lag_ms:.1f} ms"
        )
        return head + fleet.table(rows) + tail


async def _load(address: str, pki: fleet.FleetPki, plan: Plan, tag: str) -> fleet.OpenLoop:
    spec = fleet.job_spec(plan.duration_s)
    async with secure_channel(address, pki.user) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        call = functools.partial(stub.CreateJob, timeout=CALL_TIMEOUT_S)
        warm = await fleet.open_loop(call, fleet.create_requests(spec, plan.warmup, f"{tag}-warm"), plan.rate_per_s)
        if any(c.error for c in warm.calls):
            raise RuntimeError(f"warm-up CreateJob failed: {next(c.error for c in warm.calls if c.error)}")
        return await fleet.open_loop(call, fleet.create_requests(spec, plan.jobs, tag), plan.rate_per_s)


async def _started(address: str, pki: fleet.FleetPki, tag: str, want: int, timeout_s: float) -> dict[str, float]:
    """request_id -> start time (s since the epoch) of the measured jobs, once `want` have started or time is up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        jobs = await fleet.list_jobs(address, pki.user)
        started = {
            j.request_id: j.start_time.ToDatetime().timestamp()
            for j in jobs
            if j.request_id.startswith(f"{tag}-")
            and not j.request_id.startswith(f"{tag}-warm")
            and j.HasField("start_time")
        }
        if len(started) >= want or loop.time() > deadline:
            return started
        await asyncio.sleep(0.5)


def measure(workdir: Path, progress: Callable[[str], None], plan: Plan, profile: Path | None = None) -> DispatchResult:
    """One run; with `profile`, the gateway runs under cProfile into that file (its figures then mean little)."""
    pki = fleet.fleet_pki(workdir / "pki")
    run_dir = workdir / ("dispatch-profiled" if profile else "dispatch")
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    sites = fleet.site_names(plan.sites)
    progress(f"dispatch: certificates for {plan.sites} sites (cached in {pki.root})")
    for site in sites:
        pki.site(site)
    tag = f"d-{uuid.uuid4().hex[:8]}"
    config = fleet.write_gateway_config(pki, run_dir)
    with (
        fleet.gateway_process(config, run_dir, profile) as gateway,
        fleet.agent_host_process(pki, run_dir, gateway.address, sites, plan.cards_per_site, plan.duration_s),
    ):
        progress(f"dispatch: waiting for {plan.sites} agents to connect and report")
        asyncio.run(fleet.wait_for_sites(gateway.address, pki.admin, plan.sites))
        progress(f"dispatch: {plan.warmup} + {plan.jobs} jobs at {plan.rate_per_s:g}/s")
        loaded = asyncio.run(_load(gateway.address, pki, plan, tag))
        ok = [c for c in loaded.calls if not c.error]
        started = asyncio.run(_started(gateway.address, pki, tag, len(ok), 60.0))
    sent = {job_request_id(c.reply): c.sent_at for c in ok}
    latencies = [started[rid] - at for rid, at in sent.items() if rid in started]
    errors = [c.error for c in loaded.calls if c.error]
    return DispatchResult(
        plan=plan,
        started=len(latencies),
        errors=len(errors),
        first_error=errors[0] if errors else "",
        offered_s=loaded.seconds,
        max_lag_ms=loaded.max_lag_s * 1000,
        dispatch=fleet.latency_figures(latencies),
        admission=fleet.latency_figures([c.seconds for c in ok]),
    )


def job_request_id(reply: Any) -> str:
    job: job_pb2.Job = reply.job
    return job.request_id


def run(workdir: Path, progress: Callable[[str], None]) -> DispatchResult:
    return measure(workdir, progress, Plan())


if __name__ == "__main__":
    import argparse
    import sys
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m bench.dispatch", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "fedgate-bench")
    parser.add_argument("--jobs", type=int, default=Plan.jobs)
    parser.add_argument("--sites", type=int, default=Plan.sites)
    parser.add_argument("--rate", type=float, default=Plan.rate_per_s)
    parser.add_argument("--profile", type=int, default=0, metavar="TOP", help="also profile one run; print TOP rows")
    options = parser.parse_args()
    chosen = Plan(sites=options.sites, jobs=options.jobs, rate_per_s=options.rate)
    say = functools.partial(print, file=sys.stderr)
    print(measure(options.workdir, say, chosen).render())
    if options.profile:
        say("dispatch: one more run with the gateway under cProfile (not a figure)")
        out = options.workdir / "dispatch-gateway.prof"
        profiled = measure(options.workdir, say, chosen, out)
        print(f"profiled run (slowed by the profiler): p99 {profiled.dispatch['p99_ms']:.0f} ms")
        print(fleet.profile_text(out, options.profile))
