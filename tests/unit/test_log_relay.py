"""The gateway's log relay on a real site registry: which site is asked, routing of chunks, a site that writes
into another's stream, flow control by credit (and a site that ignores it), a site that goes away, and jobs that
have no output yet."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from gateway.errors import FailedPrecondition, GatewayError, Unavailable
from gateway.jobs.model import Job, JobSpec, JobState, Placement, Resources, StackRun
from gateway.sites.logs import CHUNK_BYTES, LogPiece, LogRelay
from gateway.sites.registry import (
    Command,
    LogCancelCommand,
    LogCreditCommand,
    LogRequestCommand,
    Outbox,
    SiteRegistry,
)

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
SPEC = JobSpec("panda-lm", "eval", Resources("nvidia-h20", None, 2), (StackRun("", "", ("train",)),))


def job(state: JobState = JobState.RUNNING, sites: tuple[str, ...] = ("centre-a",), epoch: int = 3) -> Job:
    placements = tuple(Placement(site, "nvidia-h20", 1) for site in sites)
    return Job("job-1", SPEC, state, NOW, NOW, attempt=epoch, epoch=epoch, placements=placements)


class Sites:
    """A registry with connected sites, and what each was sent."""

    def __init__(self, *names: str) -> None:
        self.registry = SiteRegistry()
        self.outboxes: dict[str, Outbox] = {}
        self.connections: dict[str, int] = {}
        for name in names:
            self.connect(name)

    def connect(self, name: str) -> None:
        self.connections[name], self.outboxes[name] = self.registry.connect(name, "test", NOW)

    def sent(self, name: str) -> list[tuple[int, Command]]:
        commands = []
        outbox = self.outboxes[name]
        while not outbox.empty():
            item = outbox.get_nowait()
            assert isinstance(item, tuple)
            commands.append(item)
        return commands


async def read_all(relay: LogRelay, target: Job, *, follow: bool = False, tail_bytes: int = 0) -> list[LogPiece]:
    return [piece async for piece in relay.stream(target, follow=follow, tail_bytes=tail_bytes)]


async def opened(sites: Sites, name: str = "centre-a") -> LogRequestCommand:
    """The LogRequest the relay sent `name` (after letting the reader's task start)."""
    for _ in range(100):
        commands = sites.sent(name)
        if commands:
            [(sequence, request)] = commands
            assert sequence == 0  # best effort: not part of the site's resume sequence
            assert isinstance(request, LogRequestCommand)
            return request
        await asyncio.sleep(0)
    raise AssertionError(f"{name} was not asked for a log")


async def test_the_site_holding_the_current_lease_is_asked_and_its_chunks_reach_the_reader() -> None:
    sites = Sites("centre-a", "centre-b")
    relay = LogRelay(sites.registry)
    reader = asyncio.create_task(read_all(relay, job(sites=("centre-b", "centre-a")), follow=True, tail_bytes=10))
    request = await opened(sites, "centre-b")  # a gang reads its first placement's site
    assert (request.job_id, request.epoch, request.follow, request.tail_bytes) == ("job-1", 3, True, 10)
    assert sites.sent("centre-a") == []
    assert relay.deliver("centre-b", request.stream_id, b"hello ")
    assert relay.deliver("centre-b", request.stream_id, b"world\n", end=True)
    pieces = await asyncio.wait_for(reader, 5)
    assert pieces == [LogPiece(b"hello ", "centre-b", 3), LogPiece(b"world\n", "centre-b", 3)]
    assert relay.open_streams == 0
    assert sites.sent("centre-b") == []  # the site ended the stream: no cancel needed


async def test_a_site_cannot_write_into_another_sites_stream() -> None:
    sites = Sites("centre-a", "centre-b")
    relay = LogRelay(sites.registry)
    reader = asyncio.create_task(read_all(relay, job()))
    request = await opened(sites)
    assert not relay.deliver("centre-b", request.stream_id, b"forged\n", end=True)
    assert not relay.deliver("centre-a", request.stream_id + 1000, b"nobody's\n")
    relay.deliver("centre-a", request.stream_id, b"real\n", end=True)
    assert [p.data for p in await asyncio.wait_for(reader, 5)] == [b"real\n"]


async def test_the_sites_error_ends_the_reader_after_what_was_sent() -> None:
    sites = Sites("centre-a")
    relay = LogRelay(sites.registry)
    got: list[bytes] = []

    async def read() -> None:
        async for piece in relay.stream(job()):
            got.append(piece.data)

    reader = asyncio.create_task(read())
    request = await opened(sites)
    relay.deliver("centre-a", request.stream_id, b"partial\n")
    relay.deliver("centre-a", request.stream_id, b"", end=True, error="the site has no attempt of job job-1")
    with pytest.raises(FailedPrecondition) as failure:
        await asyncio.wait_for(reader, 5)
    assert got == [b"partial\n"]
    assert failure.value.reason == "SITE_CANNOT_SERVE_LOG"
    assert "centre-a" in failure.value.message and "no attempt of job job-1" in failure.value.message


async def test_a_reader_that_leaves_early_cancels_the_stream_at_the_site() -> None:
    sites = Sites("centre-a")
    relay = LogRelay(sites.registry)
    pieces = relay.stream(job(), follow=True)
    first = asyncio.ensure_future(anext(pieces))
    request = await opened(sites)
    relay.deliver("centre-a", request.stream_id, b"line\n")
    assert (await asyncio.wait_for(first, 5)).data == b"line\n"
    await pieces.aclose()
    assert sites.sent("centre-a") == [(0, LogCancelCommand(request.stream_id))]
    assert relay.open_streams == 0
    assert not relay.deliver("centre-a", request.stream_id, b"late\n")


async def test_credit_is_granted_back_as_the_reader_consumes_so_the_gateway_holds_at_most_the_window() -> None:
    sites = Sites("centre-a")
    relay = LogRelay(sites.registry, window_bytes=4 * CHUNK_BYTES, grant_bytes=2 * CHUNK_BYTES)
    pieces = relay.stream(job(), follow=True)
    first = asyncio.ensure_future(anext(pieces))
    request = await opened(sites)
    assert request.window_bytes == 4 * CHUNK_BYTES  # the site's first credit
    chunk = b"x" * CHUNK_BYTES
    for _ in range(4):  # the whole window, before the reader takes anything
        assert relay.deliver("centre-a", request.stream_id, chunk)
    await asyncio.wait_for(first, 5)
    assert relay.held_bytes == 3 * CHUNK_BYTES
    await asyncio.wait_for(anext(pieces), 5)  # the reader came back for more: the first piece is consumed
    assert sites.sent("centre-a") == []  # one chunk consumed: below the grant step
    await asyncio.wait_for(anext(pieces), 5)
    assert sites.sent("centre-a") == [(0, LogCreditCommand(request.stream_id, 2 * CHUNK_BYTES))]
    for _ in range(2):  # exactly the credit granted back
        assert relay.deliver("centre-a", request.stream_id, chunk)
    assert relay.held_bytes == 3 * CHUNK_BYTES
    await pieces.aclose()
    assert sites.sent("centre-a") == [(0, LogCancelCommand(request.stream_id))]


async def test_a_site_that_sends_beyond_its_credit_has_the_log_stream_ended_with_a_clear_error() -> None:
    sites = Sites("centre-a")
    relay = LogRelay(sites.registry, window_bytes=4 * CHUNK_BYTES, grant_bytes=CHUNK_BYTES)
    pieces = relay.stream(job(), follow=True)
    first = asyncio.ensure_future(anext(pieces))
    request = await opened(sites)
    chunk = b"x" * CHUNK_BYTES
    for _ in range(4):  # an agent older than credit sends as fast as the link takes it
        relay.deliver("centre-a", request.stream_id, chunk)
    await asyncio.wait_for(first, 5)
    assert relay.deliver("centre-a", request.stream_id, b"!")  # one byte beyond the credit
    assert sites.sent("centre-a") == [(0, LogCancelCommand(request.stream_id))]
    assert relay.held_bytes == 0  # nothing more is held for it
    with pytest.raises(GatewayError) as ended:
        await asyncio.wait_for(anext(pieces), 5)
    assert ended.value.reason == "LOG_CREDIT_EXCEEDED"
    assert "1 bytes beyond its credit" in ended.value.message and "site centre-a" in ended.value.message
    assert not relay.deliver("centre-a", request.stream_id, chunk)
    assert relay.open_streams == 0


async def test_an_oversized_chunk_is_handed_out_in_pieces_of_at_most_64_kib() -> None:
    sites = Sites("centre-a")
    relay = LogRelay(sites.registry)
    reader = asyncio.create_task(read_all(relay, job()))
    request = await opened(sites)
    relay.deliver("centre-a", request.stream_id, b"y" * (CHUNK_BYTES + 5), end=True)
    assert [len(p.data) for p in await asyncio.wait_for(reader, 5)] == [CHUNK_BYTES, 5]


async def test_when_the_site_disconnects_its_readers_end_with_an_error_naming_it() -> None:
    sites = Sites("centre-a", "centre-b")
    relay = LogRelay(sites.registry)
    reader = asyncio.create_task(read_all(relay, job(), follow=True))
    other = asyncio.create_task(read_all(relay, job(sites=("centre-b",)), follow=True))
    await opened(sites)
    b_request = await opened(sites, "centre-b")
    relay.site_gone("centre-a", sites.connections["centre-a"] + 1000)  # some other connection: no effect
    relay.site_gone("centre-a", sites.connections["centre-a"])
    with pytest.raises(Unavailable) as gone:
        await asyncio.wait_for(reader, 5)
    assert gone.value.reason == "SITE_DISCONNECTED" and "site centre-a disconnected" in gone.value.message
    assert not other.done()
    relay.deliver("centre-b", b_request.stream_id, b"", end=True)
    assert await asyncio.wait_for(other, 5) == []


async def test_an_offline_site_is_named_and_nothing_is_opened() -> None:
    sites = Sites("centre-a")
    sites.registry.disconnect("centre-a", sites.connections["centre-a"])
    relay = LogRelay(sites.registry)
    with pytest.raises(Unavailable) as offline:
        await read_all(relay, job())
    assert offline.value.reason == "SITE_OFFLINE" and "site centre-a" in offline.value.message
    with pytest.raises(Unavailable, match="site centre-z"):
        await read_all(relay, job(sites=("centre-z",)))  # never connected at all
    assert relay.open_streams == 0


@pytest.mark.parametrize(
    ("state", "attempt", "words"),
    [
        (JobState.QUEUED, 0, "has not started yet"),
        (JobState.QUEUED, 1, "QUEUED for attempt 2"),
        (JobState.RESERVING, 0, "has not started yet"),
        (JobState.REJECTED, 0, "rejected at admission"),
        (JobState.CANCELLED, 0, "before any site started it"),
    ],
)
async def test_a_job_without_a_started_attempt_says_when_logs_appear(state: JobState, attempt: int, words: str) -> None:
    relay = LogRelay(Sites("centre-a").registry)
    placements = (Placement("centre-a", "nvidia-h20", 1),) if state == JobState.RESERVING else ()
    target = Job("job-1", SPEC, state, NOW, NOW, attempt=attempt, epoch=attempt, placements=placements)
    with pytest.raises(FailedPrecondition) as failure:
        await read_all(relay, target)
    assert failure.value.reason == "JOB_NOT_STARTED" and words in failure.value.message


async def test_the_gateway_relays_a_bounded_number_of_streams() -> None:
    sites = Sites("centre-a")
    relay = LogRelay(sites.registry, max_streams=1)
    first = relay.stream(job(), follow=True)
    pending = asyncio.ensure_future(anext(first))
    await opened(sites)
    with pytest.raises(GatewayError) as refused:
        await read_all(relay, job())
    assert refused.value.reason == "TOO_MANY_LOG_STREAMS"
    pending.cancel()
    await asyncio.gather(pending, return_exceptions=True)
    await first.aclose()
