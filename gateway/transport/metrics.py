"""A Prometheus text endpoint on loopback only: the gateway's health in numbers, for the node's own scraper.

Owns: the few figures an operator alerts on (policy version and reload failures, jobs by state, connected
sites, scheduling cycles that failed) and a minimal HTTP/1.0 server for them. It binds to loopback addresses
only: nothing is served unauthenticated on any other interface (the config loader refuses anything else).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

from gateway.app.compose import Core

MAX_REQUEST_BYTES = 8192


def render_metrics(core: Core) -> str:
    status = core.admin.policy_status()
    states = Counter(job.state.value for job in core.book.active.values())
    sites = core.registry.views({})
    cycles = core.scheduler.cycles
    lines = [
        "# HELP fedgate_policy_info The policy in force (sha256 version).",
        "# TYPE fedgate_policy_info gauge",
        f'fedgate_policy_info{{version="{status.policy.version}"}} 1',
        "# HELP fedgate_policy_reloads_total Policy reloads that swapped in a valid policy.",
        "# TYPE fedgate_policy_reloads_total counter",
        f"fedgate_policy_reloads_total {status.reloads}",
        "# HELP fedgate_policy_reload_failures_total Reloads refused; the last good policy stayed in force.",
        "# TYPE fedgate_policy_reload_failures_total counter",
        f"fedgate_policy_reload_failures_total {status.failed_reloads}",
        "# HELP fedgate_policy_reload_error 1 while the policy file on disk is invalid (see admin policy status).",
        "# TYPE fedgate_policy_reload_error gauge",
        f"fedgate_policy_reload_error {1 if status.last_error else 0}",
        "# HELP fedgate_jobs Active jobs by state.",
        "# TYPE fedgate_jobs gauge",
        *(f'fedgate_jobs{{state="{state}"}} {count}' for state, count in sorted(states.items())),
        "# HELP fedgate_sites_connected Sites with a live agent stream.",
        "# TYPE fedgate_sites_connected gauge",
        f"fedgate_sites_connected {sum(1 for s in sites if s.connected)}",
        "# HELP fedgate_scheduling_cycles_total Scheduling cycles run, by outcome (a failed one is logged with its"
        " traceback and the next one runs).",
        "# TYPE fedgate_scheduling_cycles_total counter",
        f'fedgate_scheduling_cycles_total{{outcome="completed"}} {cycles.completed}',
        f'fedgate_scheduling_cycles_total{{outcome="failed"}} {cycles.failed}',
    ]
    return "\n".join(lines) + "\n"


async def serve_metrics(core: Core, host: str, port: int) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            request = await asyncio.wait_for(reader.read(MAX_REQUEST_BYTES), 5)
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
            if path in (b"/metrics", b"/"):
                body, status = render_metrics(core).encode(), b"200 OK"
            else:
                body, status = b"not found: try /metrics\n", b"404 Not Found"
            writer.write(
                b"HTTP/1.0 "
                + status
                + b"\r\nContent-Type: text/plain; version=0.0.4\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, host, port)
