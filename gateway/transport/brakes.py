"""The brakes at the edge: rate limits per source address, before a call reaches any servicer.

Owns: `Brakes`, a server interceptor that refuses a call with RESOURCE_EXHAUSTED (reason RATE_LIMITED, a
google.rpc.RetryInfo and ErrorInfo metadata `retry_after_ms` and `limit`) when its source (the peer address from
the gRPC context, without its port) has used up its calls on the public port (`calls`), or has failed to
authenticate too often on either port (`failures`, shared by both: every call that ends UNAUTHENTICATED spends a
token, so guessing join tokens or tokens is slowed to the failure rate); and `BrakeSettings`, the defaults. The
buckets live in memory for a bounded number of sources (`gateway.trust.ratelimit`). It does not audit (the
servicers' refusals are audited, coalesced, by `gateway.trust.service`) and decides nothing about identity.
Being on every call, it also tells an optional observer (the metrics) how each one ended and how long it took.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from gateway.errors import ResourceExhausted
from gateway.transport.errors import abort
from gateway.trust.ratelimit import RateLimiter, source_of

Context = grpc.aio.ServicerContext[Any, Any]
FAILURES = frozenset({grpc.StatusCode.UNAUTHENTICATED})
CallObserver = Callable[[str, grpc.StatusCode | None, float], None]
"""Told of every call once it has ended: (method, its status code (None: OK), seconds). Metrics."""


@dataclass(frozen=True)
class BrakeSettings:
    """Rates per source address (one address: one client machine, or one NAT)."""

    public_rate: float = 50.0
    """Calls a second one source may make on the public port, on average."""
    public_burst: float = 200.0
    """Calls one source may make on the public port at once before `public_rate` applies."""
    failure_rate: float = 2.0
    """Failed authentications a second one source may have, on average, on both ports together."""
    failure_burst: float = 30.0
    """Failed authentications one source may have at once before `failure_rate` applies."""
    max_sources: int = 10_000
    """Sources remembered per limiter (the least recently seen is forgotten first)."""


def limiters(settings: BrakeSettings) -> tuple[RateLimiter, RateLimiter]:
    """(public calls, failed authentications) for one gateway process."""
    clock = time.monotonic
    calls = RateLimiter(settings.public_rate, settings.public_burst, max_sources=settings.max_sources, clock=clock)
    failures = RateLimiter(settings.failure_rate, settings.failure_burst, max_sources=settings.max_sources, clock=clock)
    return calls, failures


class Brakes(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Every call of one server passes here first. `calls` is None on the mTLS port (a caller with a
    certificate is limited by what it may do, not by rate); `failures` is shared by both ports."""

    def __init__(
        self, failures: RateLimiter, calls: RateLimiter | None = None, observer: CallObserver | None = None
    ) -> None:
        self._failures = failures
        self._calls = calls
        self._observer = observer

    def _ended(self, context: Context, source: str, method: str, started: float) -> None:
        self._after(context, source)
        if self._observer is not None:
            self._observer(method, context.code(), time.perf_counter() - started)

    async def _admit(self, context: Context) -> str:
        source = source_of(context.peer() or "")
        wait = self._failures.wait(source)
        limit = "failed_authentications"
        if not wait and self._calls is not None:
            wait, limit = self._calls.take(source), "public_calls"
        if wait:
            what = (
                "too many failed authentications"
                if limit == "failed_authentications"
                else "too many calls on the public port"
            )
            await abort(
                context,
                ResourceExhausted(
                    f"{what} from {source}; try again in {wait:.1f} s",
                    reason="RATE_LIMITED",
                    metadata={"limit": limit, "retry_after_ms": str(max(1, round(wait * 1000)))},
                ),
            )
        return source

    def _after(self, context: Context, source: str) -> None:
        if context.code() in FAILURES:
            self._failures.spend(source)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler: Any = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        if handler.unary_unary is not None or handler.stream_unary is not None:
            inner = handler.unary_unary or handler.stream_unary

            async def unary(request: Any, context: Context) -> Any:
                source, started = await self._admit(context), time.perf_counter()
                try:
                    return await inner(request, context)
                finally:
                    self._ended(context, source, method, started)

            make = (
                grpc.unary_unary_rpc_method_handler
                if handler.unary_unary is not None
                else grpc.stream_unary_rpc_method_handler
            )
            return make(unary, handler.request_deserializer, handler.response_serializer)
        streaming_inner = handler.unary_stream or handler.stream_stream
        make = (
            grpc.unary_stream_rpc_method_handler
            if handler.unary_stream is not None
            else grpc.stream_stream_rpc_method_handler
        )
        if inspect.iscoroutinefunction(streaming_inner):  # it writes with context.write (health's Watch)

            async def writing(request: Any, context: Context) -> None:
                source, started = await self._admit(context), time.perf_counter()
                try:
                    await streaming_inner(request, context)
                finally:
                    self._ended(context, source, method, started)

            return make(writing, handler.request_deserializer, handler.response_serializer)

        async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
            source, started = await self._admit(context), time.perf_counter()
            try:
                async for item in streaming_inner(request, context):
                    yield item
            finally:
                self._ended(context, source, method, started)

        return make(streaming, handler.request_deserializer, handler.response_serializer)
