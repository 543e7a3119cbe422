"""Rate limits per source: token buckets in memory, for a bounded number of sources.

Owns: `RateLimiter` (one bucket per source: `rate` tokens a second up to `burst`; a call takes one, a refusal
says how long until the next token) and the bound on what it remembers (`max_sources`: the least recently seen
source is forgotten first, which only ever forgives it: a forgotten source starts again with a full bucket, so
a flood from many addresses costs memory that stays bounded), and `source_of`, a peer address without its port.
Pure: the clock (seconds, monotonic) is passed in. It does not decide what is limited (gateway.transport.brakes
does) and speaks no gRPC.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets per source. Not thread-safe: call it from the gateway's event loop."""

    def __init__(self, rate: float, burst: float, *, max_sources: int, clock: Callable[[], float]) -> None:
        if rate <= 0 or burst < 1 or max_sources < 1:
            raise ValueError("rate must be above 0, burst at least 1, max_sources at least 1")
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def sources(self) -> int:
        """How many sources it remembers now (at most `max_sources`)."""
        return len(self._buckets)

    def _bucket(self, source: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[source] = bucket
            while len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        return bucket

    def take(self, source: str, tokens: float = 1.0) -> float:
        """Take `tokens` from `source`'s bucket: 0.0 when they were there, else the seconds until they will be
        (nothing is taken then)."""
        bucket = self._bucket(source)
        if bucket.tokens >= tokens:
            bucket.tokens -= tokens
            return 0.0
        return (tokens - bucket.tokens) / self.rate

    def wait(self, source: str) -> float:
        """Seconds until `source` has a token again (0.0 when it has one now); takes nothing."""
        bucket = self._bucket(source)
        return 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) / self.rate

    def spend(self, source: str) -> None:
        """Take one token whether or not it is there (a failure already happened): the bucket may go below
        zero, down to -burst, so that a source that keeps failing waits longer."""
        bucket = self._bucket(source)
        bucket.tokens = max(-self.burst, bucket.tokens - 1)


def source_of(peer: str) -> str:
    """The address part of a gRPC peer (`ipv4:10.0.0.1:5000` -> `10.0.0.1`, `ipv6:[::1]:5000` -> `::1`); the
    port changes with every connection, so it is no part of a source."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1 : rest.find("]")] if "]" in rest else rest
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    return peer or "unknown"
