"""The brakes' pure parts: token buckets per source with a bounded memory, and audit coalescing per window."""

from __future__ import annotations

from gateway.trust.coalesce import OVERFLOW_SOURCE, DenialCoalescer, Summary
from gateway.trust.ratelimit import RateLimiter, source_of


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_source_gets_its_burst_then_its_rate_and_is_told_when_to_come_back() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 3, max_sources=10, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == 0.5  # one token comes every 0.5 s
    assert limiter.take("b") == 0.0  # another source has its own bucket
    clock.now = 0.5
    assert limiter.take("a") == 0.0 and limiter.take("a") > 0


def test_failures_drive_a_bucket_below_zero_so_a_source_that_keeps_failing_waits_longer() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 2, max_sources=10, clock=clock)
    for _ in range(10):
        limiter.spend("a")
    assert limiter.wait("a") == 3.0  # down to -burst, then one token more


def test_memory_is_bounded_and_forgets_the_least_recently_seen_source() -> None:
    limiter = RateLimiter(1.0, 1, max_sources=2, clock=Clock())
    limiter.take("a")
    limiter.take("b")
    limiter.take("a")
    limiter.take("c")  # forgets b, not a
    assert limiter.sources == 2
    assert limiter.take("a") > 0 and limiter.take("b") == 0.0


def test_a_source_is_its_address_without_the_port() -> None:
    assert source_of("ipv4:10.0.0.1:5000") == "10.0.0.1"
    assert source_of("ipv6:[::1]:5000") == "::1"
    assert source_of("unix:/tmp/s") == "unix:/tmp/s"
    assert source_of("") == "unknown"


def test_a_flood_is_written_once_per_key_and_window_and_counted_once_it_ends() -> None:
    clock = Clock()
    coalescer = DenialCoalescer(window_s=60, max_keys=2, clock=clock)
    written = [coalescer.note("call.denied", "10.0.0.1", "BAD_TOKEN") for _ in range(1000)]
    assert written.count(True) == 1
    assert coalescer.note("call.denied", "10.0.0.2", "BAD_TOKEN")
    # Beyond max_keys, new sources are counted together.
    overflow = [coalescer.note("call.denied", f"10.0.1.{i}", "BAD_TOKEN") for i in range(50)]
    assert overflow.count(True) == 1
    assert coalescer.ended() == []  # the window has not ended
    clock.now = 60
    assert sorted(coalescer.ended(), key=lambda s: s.source) == [
        Summary("call.denied", OVERFLOW_SOURCE, "BAD_TOKEN", 49, 60, ""),
        Summary("call.denied", "10.0.0.1", "BAD_TOKEN", 999, 60, ""),
    ]
    assert coalescer.note("call.denied", "10.0.0.1", "BAD_TOKEN")  # a new window writes again
