"""The load generator shared by every benchmark: a fixed number of calls in flight, timed one by one.

Owns: opening the client's mTLS channel, driving a warm-up and then a measured run of prepared requests
through one async callable with `concurrency` calls in flight, and turning the timings into a `RunResult`.
The same code drives the gateway and the echo baseline, so their figures differ only by the server. It does
not build requests or know what the server does with them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

CALL_TIMEOUT_S = 30.0


class LoadFailed(RuntimeError):
    """The warm-up already failed: the server refuses the requests, so measuring it would mean nothing."""


@dataclass(frozen=True)
class RunResult:
    """One measured run. Latencies are per call, from just before the call to its reply, in milliseconds."""

    requests: int  # calls made (fewer than asked for when the run was capped)
    concurrency: int
    seconds: float  # wall time of the measured run, warm-up excluded
    capped: bool  # the time cap ended the run before every prepared request was sent
    errors: int  # calls that ended in a gRPC error
    first_error: str  # status and details of the first error, "" if none
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        """Completed calls per second of wall time."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (the smallest value >= pct % of them)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def secure_channel(address: str, creds: Path) -> grpc.aio.Channel:
    """A client channel that presents `creds/cert.pem` and trusts only the federation CA."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(creds / "ca.pem").read_bytes(),
        private_key=(creds / "key.pem").read_bytes(),
        certificate_chain=(creds / "cert.pem").read_bytes(),
    )
    return grpc.aio.secure_channel(address, credentials)


async def drive(
    call: Callable[[Any], Awaitable[Any]],
    requests: Sequence[Any],
    concurrency: int,
    max_seconds: float | None = None,
) -> RunResult:
    """Send the requests through `call`, keeping `concurrency` calls in flight until none are left or, with
    `max_seconds`, until that much time has passed: then no new call starts and the ones in flight finish.
    The result counts only the calls made."""
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    latencies: list[float] = []
    failures: list[str] = []
    indices = iter(range(len(requests)))

    async def worker() -> None:
        # One shared iterator: each worker takes the next request when its previous call returns.
        while deadline is None or time.perf_counter() < deadline:
            i = next(indices, None)
            if i is None:
                return
            started = time.perf_counter()
            try:
                await call(requests[i])
            except grpc.aio.AioRpcError as exc:
                failures.append(f"{exc.code().name}: {exc.details()}")
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(requests)))))
    seconds = time.perf_counter() - started
    return _result(latencies, failures, concurrency, seconds, capped=len(latencies) < len(requests))


async def warm_then_measure(
    call: Callable[[Any], Awaitable[Any]],
    warmup: Sequence[Any],
    measured: Sequence[Any],
    concurrency: int,
    max_seconds: float | None = None,
) -> RunResult:
    """Warm the connection and both processes' caches (fails if any warm-up call fails), then measure for
    at most `max_seconds`; the warm-up is never capped."""
    warm = await drive(call, warmup, concurrency)
    if warm.errors:
        raise LoadFailed(f"{warm.errors} of {warm.requests} warm-up calls failed, first: {warm.first_error}")
    return await drive(call, measured, concurrency, max_seconds)


async def open_loop(
    call: Callable[[Any], Awaitable[Any]],
    requests: Sequence[Any],
    rate: float,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> RunResult:
    """Send the requests through `call` at a fixed arrival rate (`rate` calls a second), open loop: call i is
    due at start + i / rate whether or not earlier calls have returned, so a slow server meets a growing queue
    instead of a slower client (no coordinated omission). A call's latency runs from when it was due to its
    reply, so a client that fell behind its schedule counts against the figure, not for it. `clock` and
    `sleep` are injectable for tests."""
    if rate <= 0:
        raise ValueError(f"the arrival rate must be positive, not {rate}")
    latencies: list[float] = []
    failures: list[str] = []

    async def one(request: Any, due: float) -> None:
        try:
            await call(request)
        except grpc.aio.AioRpcError as exc:
            failures.append(f"{exc.code().name}: {exc.details()}")
        latencies.append(clock() - due)

    started = clock()
    tasks = []
    for i, request in enumerate(requests):
        due = started + i / rate
        wait = due - clock()
        if wait > 0:
            await sleep(wait)
        tasks.append(asyncio.ensure_future(one(request, due)))
    await asyncio.gather(*tasks)
    # concurrency 0: open loop, as many in flight as the server lets pile up
    return _result(latencies, failures, 0, clock() - started, capped=False)


def _result(latencies: list[float], failures: list[str], concurrency: int, seconds: float, capped: bool) -> RunResult:
    ms = sorted(x * 1000 for x in latencies)
    return RunResult(
        requests=len(ms),
        concurrency=concurrency,
        seconds=seconds,
        capped=capped,
        errors=len(failures),
        first_error=failures[0] if failures else "",
        p50_ms=percentile(ms, 50),
        p99_ms=percentile(ms, 99),
        mean_ms=sum(ms) / len(ms) if ms else 0.0,
        max_ms=ms[-1] if ms else 0.0,
    )
