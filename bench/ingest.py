"""Capacity-report ingest: how many CapacityReports a second the gateway applies from 1,000 site streams.

What runs: the real gateway (`fedgate gateway run`, its own process, fresh SQLite store), and in this process
1,000 site streams spoken with the generated stubs (`bench.sitestreams`, not the agent: this measures the
gateway's ingest, not an agent's), each on its own mTLS channel with its own site certificate (EC keys from
the federation CA, cached under `workdir/pki`). Every stream says Hello and gets its Welcome before the clock
starts. Timed: each stream writes 20 full capacity reports (one pool of 16 ascend-910b cards, free cards
changing every report) as fast as gRPC's flow control lets it, then half-closes; the clock stops when the
gateway has ended every stream. The gateway reads each stream in order and ends it only after its read loop
has handled the half-close, so a stream that ended OK had every report applied; the count is checked against
what the gateway shows afterwards: ListSites must give each site the free cards of its last report (a value
no earlier report carries). reports/s = reports on streams that ended OK and whose site shows its last report,
over the timed wall time.

Baseline in the same run: `bench.stream_echo`, a bare grpc.aio bidirectional stream server in its own process
with the same certificate and client certificates required, driven by the same client code with the same
streams, the same message bytes and the gateway's own Welcome as its first reply; it reads every message
without parsing it. Target: >= 2,000 reports/s.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc

from bench import fleet, sitestreams

TARGET_REPORTS_PER_S = 2000.0


@dataclass(frozen=True)
class Plan:
    streams: int = 1000
    reports_per_stream: int = 20
    cards: int = 16


@dataclass(frozen=True)
class IngestRun:
    """One server's timed run."""

    streams: int  # streams opened (Hello answered)
    open_seconds: float  # to open them all, not timed into the rate
    sent: int  # reports written
    seconds: float  # first write to the last stream's end
    ended_ok: int  # streams the server ended with OK
    applied: int  # reports counted as processed (see the module docstring)
    server_cpu_s: float  # CPU time the server process used over the timed run (user + system)

    @property
    def reports_per_s(self) -> float:
        return self.applied / self.seconds if self.seconds > 0 else 0.0

    @property
    def per_cpu_s(self) -> float:
        """Reports per CPU-second of the server: what it could take if the client were not the limit."""
        return self.applied / self.server_cpu_s if self.server_cpu_s > 0 else 0.0


@dataclass(frozen=True)
class IngestResult:
    plan: Plan
    gateway: IngestRun
    echo: IngestRun

    @property
    def met(self) -> bool:
        return self.gateway.applied == self.gateway.sent and self.gateway.reports_per_s >= TARGET_REPORTS_PER_S

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": asdict(self.plan),
            "gateway": {**asdict(self.gateway), "reports_per_s": self.gateway.reports_per_s},
            "gateway_reports_per_cpu_s": self.gateway.per_cpu_s,
            "echo": {**asdict(self.echo), "reports_per_s": self.echo.reports_per_s},
            "echo_reports_per_cpu_s": self.echo.per_cpu_s,
            "target_reports_per_s": TARGET_REPORTS_PER_S,
            "met": self.met,
        }

    def summary(self) -> dict[str, float | None]:
        return {"ingest.reports_per_s": self.gateway.reports_per_s if self.gateway.applied else None}

    def render(self) -> str:
        g, e, p = self.gateway, self.echo, self.plan
        share = f"{g.reports_per_s / e.reports_per_s:.0%}" if e.reports_per_s else "-"
        rows = [["row", "streams", "reports applied", "seconds", "reports/s", "server CPU s", "vs echo", "target"]]
        rows.append(
            [
                "gateway",
                str(g.streams),
                f"{g.applied} of {g.sent}",
                f"{g.seconds:.2f}",
                f"{g.reports_per_s:,.0f}",
                f"{g.server_cpu_s:.2f}",
                share,
                f">= {TARGET_REPORTS_PER_S:,.0f}/s: {fleet.verdict(self.met)}",
            ]
        )
        rows.append(
            [
                "stream echo",
                str(e.streams),
                f"{e.applied} of {e.sent}",
                f"{e.seconds:.2f}",
                f"{e.reports_per_s:,.0f}",
                f"{e.server_cpu_s:.2f}",
                "100%",
                "baseline",
            ]
        )
        head = (
            f"ingest: {p.streams} site streams x {p.reports_per_stream} capacity reports, each its own mTLS channel\n"
        )
        tail = (
            f"\n  reports per CPU-second of the server process (all its threads): gateway {g.per_cpu_s:,.0f},"
            f" echo {e.per_cpu_s:,.0f}; the client shares the same 2 cores"
            f"\n  opening the streams (Hello/Welcome, not timed): gateway {g.open_seconds:.1f} s,"
            f" echo {e.open_seconds:.1f} s"
        )
        return head + fleet.table(rows) + tail


async def _timed(
    address: str, sites: list[tuple[str, Path]], plan: Plan, pid: int
) -> tuple[list[sitestreams.SiteStream], float, float, int, float]:
    """Open every stream, then time writing all reports and the streams' ends; returns the streams, the opening
    time, the timed seconds, how many ended OK and the CPU seconds server `pid` used meanwhile."""
    opened = time.perf_counter()
    streams = await sitestreams.open_streams(address, sites)
    open_seconds = time.perf_counter() - opened
    reports = sitestreams.capacity_reports(plan.reports_per_stream, fleet.ACCELERATOR_CLASS, plan.cards)

    async def one(stream: sitestreams.SiteStream) -> bool:
        await stream.write_all(reports)
        await stream.finish()
        return bool(await stream.call.code() == grpc.StatusCode.OK)

    started, cpu = time.perf_counter(), fleet.cpu_seconds(pid)
    ok = await asyncio.gather(*(one(s) for s in streams))
    seconds, cpu = time.perf_counter() - started, fleet.cpu_seconds(pid) - cpu
    for stream in streams:
        await stream.close()
    return streams, open_seconds, seconds, sum(ok), cpu


def _gateway_run(
    pki: fleet.FleetPki, run_dir: Path, sites: list[tuple[str, Path]], plan: Plan
) -> tuple[IngestRun, bytes]:
    config = fleet.write_gateway_config(pki, run_dir)
    with fleet.gateway_process(config, run_dir) as gateway:
        streams, open_s, seconds, ended, cpu = asyncio.run(_timed(gateway.address, sites, plan, gateway.pid))
        shown = asyncio.run(fleet.connected_sites(gateway.address, pki.admin, connected_only=False))
    last = sitestreams.final_free(plan.cards)
    applied_sites = sum(1 for s in streams if shown.get(s.site) == last)
    applied = min(applied_sites, ended) * plan.reports_per_stream
    run = IngestRun(len(streams), open_s, len(streams) * plan.reports_per_stream, seconds, ended, applied, cpu)
    return run, streams[0].welcome


def _echo_run(
    pki: fleet.FleetPki, run_dir: Path, sites: list[tuple[str, Path]], plan: Plan, welcome: bytes
) -> IngestRun:
    response = run_dir / "welcome.bin"
    response.write_bytes(welcome)
    command = [sys.executable, "-m", "bench.stream_echo", "--creds", str(pki.server), "--response", str(response)]
    with fleet.GatewayProcess(command, run_dir, "stream-echo") as echo:
        streams, open_s, seconds, ended, cpu = asyncio.run(_timed(echo.address, sites, plan, echo.pid))
    # The echo keeps no view to check: a stream it ended OK had every message read.
    sent = len(streams) * plan.reports_per_stream
    return IngestRun(len(streams), open_s, sent, seconds, ended, ended * plan.reports_per_stream, cpu)


def measure(workdir: Path, progress: Callable[[str], None], plan: Plan) -> IngestResult:
    pki = fleet.fleet_pki(workdir / "pki")
    root = workdir / "ingest"
    shutil.rmtree(root, ignore_errors=True)
    (root / "gateway").mkdir(parents=True)
    (root / "echo").mkdir(parents=True)
    names = fleet.site_names(plan.streams, "ingest")
    progress(f"ingest: certificates for {plan.streams} sites (issued once, cached in {pki.root / 'sites'})")
    sites = [(name, pki.site(name)) for name in names]
    progress(f"ingest: gateway, {plan.streams} streams x {plan.reports_per_stream} reports")
    gateway, welcome = _gateway_run(pki, root / "gateway", sites, plan)
    progress("ingest: stream echo baseline, same client and streams")
    echo = _echo_run(pki, root / "echo", sites, plan, welcome)
    return IngestResult(plan, gateway, echo)


def run(workdir: Path, progress: Callable[[str], None]) -> IngestResult:
    return measure(workdir, progress, Plan())


if __name__ == "__main__":
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "fedgate-bench")
    parser.add_argument("--streams", type=int, default=Plan.streams)
    parser.add_argument("--reports", type=int, default=Plan.reports_per_stream)
    options = parser.parse_args()
    chosen = Plan(streams=options.streams, reports_per_stream=options.reports)
    print(measure(options.workdir, lambda line: print(line, file=sys.stderr), chosen).render())
