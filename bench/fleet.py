"""What the fleet benchmarks share (dispatch, end_to_end, ingest, gangs, memory): PKI with cached site
certificates, the gateway's config and process (optionally under cProfile), a host process for many real
agents, the admin's look at the gateway, job specs and the open-loop pacer.

Owns: those pieces only; each benchmark module owns its load, its figures and its verdict. Site certificates
are EC keys issued by the federation CA and kept under `workdir/pki`, so a second run in the same workdir
reuses them (1,000 sites cost about a minute to issue on this VM, nothing the second time).
It does not time anything itself except in `open_loop`, whose timings are the caller's measurements.
"""

from __future__ import annotations

import asyncio
import os
import pstats
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench import admission
from bench.admission import FEDERATION
from bench.load import CALL_TIMEOUT_S, percentile, secure_channel
from bench.process import ServerProcess
from fedgate.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from gateway.identity.ca import CertificateAuthority, init_ca
from gateway.identity.principal import Principal

TENANT, PROJECT, ACCELERATOR_CLASS, STACK = "deepsea-ai", "llama-sft", "ascend-910b", "cann"
DURATION_LABEL = "fedgate.io/sim-duration-s"  # agents.backends.simulated reads it: how long an attempt lasts


@dataclass
class FleetPki:
    """The federation CA and the credentials the benchmarks present; site certificates issued on demand."""

    root: Path
    ca: CertificateAuthority
    server: Path  # the gateway's serving credentials (also what echo baselines serve)
    user: Path  # alice of deepsea-ai
    admin: Path

    def site(self, name: str) -> Path:
        out = self.root / "sites" / name
        if not (out / "cert.pem").exists():
            self.ca.issue(Principal.site(FEDERATION, name), out)
        return out


def fleet_pki(root: Path) -> FleetPki:
    """The PKI under `root`, made on first use and reused afterwards (with every site issued so far)."""
    if (root / "ca" / "ca.pem").exists():
        ca = CertificateAuthority.load(root / "ca")
    else:
        ca = init_ca(root / "ca", FEDERATION)
    if not (root / "gateway" / "cert.pem").exists():
        ca.issue_server(root / "gateway")
    user, admin = root / "alice", root / "admin"
    if not (user / "cert.pem").exists():
        ca.issue(Principal.user(FEDERATION, TENANT, "alice"), user)
    if not (admin / "cert.pem").exists():
        ca.issue(Principal.admin(FEDERATION, "root"), admin)
    return FleetPki(root, ca, root / "gateway", user, admin)


def site_names(count: int, prefix: str = "site") -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(count)]


def write_gateway_config(pki: FleetPki, workdir: Path, store: Path | None = None, **extra: object) -> Path:
    """The gateway's YAML in `workdir` (SQLite store `workdir/gw.db` unless `store` is given); `extra` adds keys
    such as `report_interval_s` or `schedule_period_s`."""
    url = f"sqlite:///{store or workdir / 'gw.db'}"
    return admission.write_gateway_config(workdir, server=pki.server, authority=pki.root / "ca", store=url, extra=extra)


class GatewayProcess(ServerProcess):
    """A server (the gateway, or a baseline) in a process of its own, whose pid can be read (/proc/<pid>/...)."""

    def __enter__(self) -> GatewayProcess:
        super().__enter__()
        return self

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the gateway process has not been started")
        return self._proc.pid


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (/proc/<pid>/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gateway_process(config: Path, workdir: Path, profile: Path | None = None) -> GatewayProcess:
    """`fedgate gateway run --config F` in a process of its own; with `profile`, under `python -m cProfile -o`
    (written when the gateway stops cleanly on SIGTERM). Profile only runs whose figures are not reported."""
    command = [sys.executable, "-m", "fedgate.cli", "gateway", "run", "--config", str(config)]
    if profile is not None:
        command = [sys.executable, "-m", "cProfile", "-o", str(profile), *command[1:]]
    return GatewayProcess(command, workdir, "gateway")


def agent_host_process(
    pki: FleetPki,
    workdir: Path,
    address: str,
    sites: Sequence[str],
    cards: int,
    duration_s: float = 0.0,
    cards_per_node: int | None = None,
) -> ServerProcess:
    """`python -m bench.agenthost`: the real agent (`agents.transport.connection.run_agent`) for each site, all
    in one asyncio process, each with its own site certificate, on the simulated backend."""
    for site in sites:
        pki.site(site)
    (workdir / "sites.txt").write_text("\n".join(sites) + "\n")
    command = [
        sys.executable,
        "-m",
        "bench.agenthost",
        "--gateway",
        address,
        "--pki",
        str(pki.root),
        "--sites",
        str(workdir / "sites.txt"),
        "--workdir",
        str(workdir / "agents"),
        "--class",
        ACCELERATOR_CLASS,
        "--cards",
        str(cards),
        "--cards-per-node",
        str(cards_per_node or cards),
        "--duration",
        str(duration_s),
    ]
    return ServerProcess(command, workdir, "agents")


def job_spec(duration_s: float, cards: int = 1, topology: tuple[int, int] | None = None) -> job_pb2.JobSpec:
    """alice's job of deepsea-ai/llama-sft on `cards` ascend-910b cards, lasting `duration_s` on the simulated
    backend; `topology` = (max_sites, min_cards_per_site) makes it a gang that may span sites."""
    return job_pb2.JobSpec(
        tenant=TENANT,
        project=PROJECT,
        name="bench",
        resources=job_pb2.Resources(accelerator_class=ACCELERATOR_CLASS, cards=cards),
        runs=[job_pb2.StackRun(stack=STACK, image="", command=["true"])],
        labels={DURATION_LABEL: f"{duration_s:g}"},
        topology=job_pb2.Topology(max_sites=topology[0], min_cards_per_site=topology[1]) if topology else None,
    )


def create_requests(spec: job_pb2.JobSpec, count: int, tag: str) -> list[job_service_pb2.CreateJobRequest]:
    return [job_service_pb2.CreateJobRequest(request_id=f"{tag}-{i}", spec=spec) for i in range(count)]


async def connected_sites(address: str, admin: Path, connected_only: bool = True) -> dict[str, int]:
    """Each site the gateway lists as connected (all that reported, without `connected_only`) with the free
    cards it reports."""
    found: dict[str, int] = {}
    async with secure_channel(address, admin) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        token = ""
        while True:
            page = await stub.ListSites(
                job_service_pb2.ListSitesRequest(page_size=500, page_token=token), timeout=CALL_TIMEOUT_S
            )
            for site in page.sites:
                if site.pools and (site.connected or not connected_only):
                    found[site.name] = sum(p.free for p in site.pools)
            token = page.next_page_token
            if not token:
                return found


async def wait_for_sites(address: str, admin: Path, count: int, timeout_s: float = 120.0) -> None:
    """Until `count` sites are connected and have reported capacity; TimeoutError naming how many did."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = len(await connected_sites(address, admin))
        if seen >= count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{seen} of {count} sites connected and reported within {timeout_s:.0f} s")
        await asyncio.sleep(0.5)


async def list_jobs(address: str, creds: Path) -> list[job_pb2.Job]:
    """Every job the caller may see, all pages."""
    jobs: list[job_pb2.Job] = []
    async with secure_channel(address, creds) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        token = ""
        while True:
            page = await stub.ListJobs(
                job_service_pb2.ListJobsRequest(page_size=1000, page_token=token),
                timeout=CALL_TIMEOUT_S,
            )
            jobs.extend(page.jobs)
            token = page.next_page_token
            if not token:
                return jobs


@dataclass(frozen=True)
class Sent:
    """One call of an open-loop run: when it was sent (wall clock, s since the epoch) and what came back."""

    sent_at: float
    seconds: float
    reply: Any = None
    error: str = ""


@dataclass(frozen=True)
class OpenLoop:
    calls: list[Sent]
    seconds: float  # from the first send to the last reply
    max_lag_s: float  # how late the pacer sent its latest call: large means the client could not keep up
    offsets: list[float] = field(default_factory=list)  # when each call was due, s after the first


def due_offsets(count: int, rate_per_s: float) -> list[float]:
    """When each of `count` calls is due, in seconds after the first: evenly spaced at `rate_per_s`."""
    return [i / rate_per_s for i in range(count)]


async def open_loop(call: Callable[[Any], Awaitable[Any]], requests: Sequence[Any], rate_per_s: float) -> OpenLoop:
    """Send every request at its due time whatever the earlier calls are doing (open loop: a slow server does
    not slow the offered load down), then wait for all replies. gRPC errors are kept per call, not raised."""
    offsets = due_offsets(len(requests), rate_per_s)
    loop_start = time.perf_counter()
    max_lag = 0.0

    async def one(request: Any) -> Sent:
        sent_at, started = time.time(), time.perf_counter()
        try:
            reply = await call(request)
        except grpc.aio.AioRpcError as exc:
            return Sent(sent_at, time.perf_counter() - started, None, f"{exc.code().name}: {exc.details()}")
        return Sent(sent_at, time.perf_counter() - started, reply)

    tasks = []
    for offset, request in zip(offsets, requests, strict=True):
        delay = loop_start + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        max_lag = max(max_lag, -delay)
        tasks.append(asyncio.create_task(one(request)))
    calls = list(await asyncio.gather(*tasks))
    return OpenLoop(calls, time.perf_counter() - loop_start, max_lag, offsets)


def latency_figures(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p99, mean and max in milliseconds (nearest-rank percentiles, as `bench.load`)."""
    ms = sorted(s * 1000 for s in seconds)
    return {
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "mean_ms": sum(ms) / len(ms) if ms else 0.0,
        "max_ms": ms[-1] if ms else 0.0,
    }


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else "met" if met else "MISSED"


def table(rows: Sequence[Sequence[str]]) -> str:
    """A small text table: the first row is the header, columns padded to their widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def profile_text(path: Path, top: int) -> str:
    """The top entries of a cProfile file by cumulative time, each with its share of the profile's total."""
    stats = pstats.Stats(str(path))
    total = stats.total_tt  # type: ignore[attr-defined]
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    # The event loop's own frames (and the CLI around it) hold nearly everything: they say nothing.
    rows = sorted(
        (item for item in raw.items() if item[1][3] < 0.9 * total and not _wrapper(item[0])),
        key=lambda item: item[1][3],
        reverse=True,
    )
    lines = [f"gateway main thread, {total:.1f} s of profiled time; top {top} by cumulative time:"]
    lines.append(f"{'cum s':>8} {'cum %':>6} {'own s':>8} {'calls':>9}  function")
    for (file, line, name), (_, calls, own, cum, _) in rows[:top]:
        where = f"{_short(file)}:{line}({name})" if line else name
        lines.append(f"{cum:8.2f} {cum / total:6.1%} {own:8.2f} {calls:9d}  {where}")
    by_own = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:top]
    lines.append(f"top {top} by own time:")
    for (file, line, name), (_, calls, own, cum, _) in by_own:
        where = f"{_short(file)}:{line}({name})" if line else name
        lines.append(f"{own:8.2f} {own / total:6.1%} {cum:8.2f} {calls:9d}  {where}")
    return "\n".join(lines)


def _wrapper(where: tuple[str, int, str]) -> bool:
    file, _, name = where
    return (
        "asyncio/" in file or file.startswith("<frozen") or name in {"<method 'run' of '_contextvars.Context' objects>"}
    )


def _short(file: str) -> str:
    for marker in ("/site-packages/", "/bench16b/", "/lib/python3.11/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file
