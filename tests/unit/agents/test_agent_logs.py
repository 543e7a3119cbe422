"""The agent's log server on a real runtime with the fake backend, and over a real stream to a fake gateway:
chunking, tails, following until the end, cancelling, unknown attempts, credit and the bounds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from agents.backends.base import JobHandle
from agents.core.commands import Launch, LogCancel, LogCredit, LogRequest
from agents.core.config import AgentConfig
from agents.core.logs import CHUNK_BYTES, LogChunk, LogServer
from agents.core.runtime import SiteRuntime
from agents.errors import BackendError
from agents.journal.base import MemoryJournal
from fedgate.v1 import job_pb2
from gateway.sites.registry import LogRequestCommand
from tests.jobs import JOB_PYTHON
from tests.waiting import eventually_async

from .conftest import GatewayUnderTest, running_agent
from .fakes import FakeBackend
from .gateway_wire import launch_message
from .test_agent_runtime import launch, make_config, settle

KEY = ("j1", 1)


class CountingBackend(FakeBackend):
    """Counts output reads; `broken` makes them fail as a backend that lost its scheduler would."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.broken = False

    async def read_output(self, handle: JobHandle, offset: int, limit: int) -> bytes:
        self.reads += 1
        if self.broken:
            raise BackendError("the scheduler's log API answered 503")
        return await super().read_output(handle, offset, limit)


@pytest.fixture
def backend() -> CountingBackend:
    return CountingBackend()


@pytest.fixture
def runtime(backend: CountingBackend) -> SiteRuntime:
    return SiteRuntime(make_config(), backend, MemoryJournal())


def server(runtime: SiteRuntime, **bounds: int) -> LogServer:
    return LogServer(runtime, lambda: None, poll_interval_s=0.01, **bounds)


async def drain(logs: LogServer, stream_id: int = 1) -> list[LogChunk]:
    """Take chunks of one stream until its end chunk; fails instead of hanging."""
    chunks: list[LogChunk] = []

    def ended() -> bool:
        chunks.extend(c for c in logs.take(16) if c.stream_id == stream_id)
        return bool(chunks) and chunks[-1].end

    await eventually_async(ended, what=f"stream {stream_id} to end")
    return chunks


def data_of(chunks: list[LogChunk]) -> bytes:
    return b"".join(c.data for c in chunks)


async def test_output_is_sent_in_chunks_of_at_most_64_kib_then_ends(
    runtime: SiteRuntime, backend: CountingBackend
) -> None:
    await runtime.handle(launch())
    backend.output[KEY] = bytes(range(256)) * 600  # 150 KiB
    logs = server(runtime)
    logs.handle(LogRequest(1, "j1", 1))
    chunks = await drain(logs)
    assert [len(c.data) for c in chunks] == [CHUNK_BYTES, CHUNK_BYTES, 153_600 - 2 * CHUNK_BYTES, 0]
    assert data_of(chunks) == backend.output[KEY]
    assert chunks[-1].end and not chunks[-1].error
    assert logs.active == 0


@pytest.mark.parametrize("size", [0, 10, 70_000, 300_001])
async def test_tail_starts_that_many_bytes_before_the_end(
    runtime: SiteRuntime, backend: CountingBackend, size: int
) -> None:
    await runtime.handle(launch())
    backend.output[KEY] = bytes(i % 251 for i in range(size))
    logs = server(runtime)
    logs.handle(LogRequest(1, "j1", 1, tail_bytes=1000))
    assert data_of(await drain(logs)) == backend.output[KEY][-1000:]


async def test_follow_sends_new_output_until_the_attempt_has_ended(
    runtime: SiteRuntime, backend: CountingBackend
) -> None:
    await runtime.handle(launch())
    backend.output[KEY] = b"epoch 1 loss 3.2\n"
    logs = server(runtime)
    logs.handle(LogRequest(1, "j1", 1, follow=True))
    seen: list[LogChunk] = []

    def some() -> bool:
        seen.extend(logs.take(16))
        return bool(seen)

    await eventually_async(some, what="the first chunk")
    assert data_of(seen) == b"epoch 1 loss 3.2\n" and not seen[-1].end
    backend.output[KEY] += b"epoch 2 loss 2.9\n"
    backend.finish("j1", 1)  # written before it ended: must still be sent
    await settle()
    rest = await drain(logs)
    assert data_of(seen + rest) == b"epoch 1 loss 3.2\nepoch 2 loss 2.9\n"
    assert rest[-1].end and not rest[-1].error


async def test_without_follow_a_running_attempt_sends_what_it_has_written_and_ends(
    runtime: SiteRuntime, backend: CountingBackend
) -> None:
    await runtime.handle(launch())
    backend.output[KEY] = b"so far\n"
    logs = server(runtime)
    logs.handle(LogRequest(1, "j1", 1))
    chunks = await drain(logs)
    assert data_of(chunks) == b"so far\n" and chunks[-1].end
    assert runtime.running()  # reading never touches the attempt


async def test_an_ended_attempt_can_still_be_read(runtime: SiteRuntime, backend: CountingBackend) -> None:
    await runtime.handle(launch())
    backend.output[KEY] = b"done\n"
    backend.finish("j1", 1, exit_code=2)
    await settle()
    assert runtime.running() == []
    logs = server(runtime)
    logs.handle(LogRequest(1, "j1", 1, follow=True))
    assert data_of(await drain(logs)) == b"done\n"


async def test_cancel_stops_a_followed_stream_without_an_end_chunk(
    runtime: SiteRuntime, backend: CountingBackend
) -> None:
    await runtime.handle(launch())
    logs = server(runtime)
    logs.handle(LogRequest(7, "j1", 1, follow=True))
    await eventually_async(lambda: backend.reads >= 2, what="the stream to poll the output")
    assert logs.active == 1
    (stream,) = [t for t in asyncio.all_tasks() if t.get_name() == "log-7"]
    logs.handle(LogCancel(7))
    await asyncio.wait([stream], timeout=5)
    assert stream.cancelled(), "the stream's task still runs: it would poll on"
    assert logs.active == 0
    assert logs.take(16) == []
    logs.handle(LogCancel(99))  # an unknown stream is ignored


async def test_unknown_attempt_ends_at_once_with_an_error_that_says_so(runtime: SiteRuntime) -> None:
    await runtime.handle(launch())
    logs = server(runtime)
    logs.handle(LogRequest(3, "j1", 2))
    [chunk] = logs.take(16)
    assert (chunk.stream_id, chunk.end, chunk.data) == (3, True, b"")
    assert "no attempt of job j1 at epoch 2" in chunk.error
    assert logs.active == 0


async def test_an_attempt_refused_before_it_started_has_no_output(
    runtime: SiteRuntime, backend: CountingBackend
) -> None:
    await runtime.handle(launch(cards=64))  # more than the pool has: refused, never started
    logs = server(runtime)
    logs.handle(LogRequest(1, "j1", 1))
    [chunk] = logs.take(16)
    assert chunk.end and "never started here" in chunk.error
    assert backend.reads == 0


async def test_a_backend_error_ends_the_stream_with_its_message(runtime: SiteRuntime, backend: CountingBackend) -> None:
    await runtime.handle(launch())
    backend.broken = True
    logs = server(runtime)
    logs.handle(LogRequest(1, "j1", 1))
    [chunk] = await drain(logs)
    assert chunk.end and "could not read the output" in chunk.error and "503" in chunk.error


async def test_a_site_serves_a_bounded_number_of_streams(runtime: SiteRuntime) -> None:
    for job in ("a", "b", "c"):
        await runtime.handle(Launch(job, 1, 1, "ascend-910b", cards=1, command=("x",)))
    logs = server(runtime, max_streams=2)
    logs.handle(LogRequest(1, "a", 1, follow=True))
    logs.handle(LogRequest(2, "b", 1, follow=True))
    logs.handle(LogRequest(3, "c", 1, follow=True))
    [refused] = [c for c in logs.take(16) if c.stream_id == 3]
    assert refused.end and "at most 2 log streams" in refused.error
    assert logs.active == 2
    logs.close()
    await settle()
    assert logs.active == 0


async def test_a_stream_does_not_read_ahead_of_what_the_link_has_taken(
    runtime: SiteRuntime, backend: CountingBackend
) -> None:
    await runtime.handle(launch())
    backend.output[KEY] = b"x" * (20 * CHUNK_BYTES)
    logs = server(runtime, outgoing_chunks=2)
    logs.handle(LogRequest(1, "j1", 1))
    await eventually_async(lambda: backend.reads >= 3, what="the stream to read three chunks")
    await settle()  # the fake's reads do no I/O: a stream that read on would have done so by now
    assert backend.reads == 3  # two chunks wait, the third read waits for room: not 20 chunks in memory
    assert len(data_of(await drain(logs))) == 20 * CHUNK_BYTES


async def test_a_stream_sends_no_more_than_its_credit_and_waits_for_more_without_holding_back_others(
    runtime: SiteRuntime, backend: CountingBackend
) -> None:
    await runtime.handle(launch())
    await runtime.handle(Launch("j2", 1, 1, "ascend-910b", cards=1, command=("x",)))
    backend.output[KEY] = bytes(i % 253 for i in range(300_000))
    backend.output[("j2", 1)] = b"other job\n" * 20_000
    logs = server(runtime)
    logs.handle(LogRequest(1, "j1", 1, window_bytes=100_000))
    chunks: list[LogChunk] = []

    def taken(stream_id: int, size: int) -> bool:
        chunks.extend(logs.take(16))
        return len(data_of([c for c in chunks if c.stream_id == stream_id])) >= size

    await eventually_async(lambda: taken(1, 100_000), what="the stream to use its credit")
    reads = backend.reads
    logs.handle(LogRequest(2, "j2", 1))  # no window: a gateway older than credit
    await eventually_async(lambda: taken(2, 200_000), what="another stream to send while the first waits")
    assert backend.reads > reads
    first = [c for c in chunks if c.stream_id == 1]
    assert [len(c.data) for c in first] == [CHUNK_BYTES, 100_000 - CHUNK_BYTES]  # cut to the credit left
    assert not first[-1].end and logs.active == 1  # it waits for credit: it has not ended
    logs.handle(LogCredit(1, 150_000))
    logs.handle(LogCredit(99, 1_000_000))  # a stream it does not serve: ignored
    await eventually_async(lambda: taken(1, 250_000), what="the stream to use its new credit")
    logs.handle(LogCredit(1, 50_000))

    def ended() -> bool:
        chunks.extend(logs.take(16))
        return any(c.stream_id == 1 and c.end for c in chunks)

    await eventually_async(ended, what="the stream to end")
    first = [c for c in chunks if c.stream_id == 1]
    assert data_of(first) == backend.output[KEY] and first[-1].end and not first[-1].error


PY = JOB_PYTHON
MakeConfig = Callable[..., AgentConfig]


async def test_log_request_over_the_stream_is_answered_with_chunks_and_not_acknowledged(
    gateway: GatewayUnderTest, make_config: MakeConfig
) -> None:
    async with running_agent(make_config(gateway=gateway.target)):
        stream = await gateway.fake.next_stream()
        command = (PY, "-c", "print('step 1'); print('step 2')")
        run = Launch("j1", 1, 1, "nvidia-h100", cards=1, command=command, stack="cuda")
        stream.send(launch=launch_message(run))
        await stream.update(job_pb2.JOB_STATE_SUCCEEDED)
        stream.send_command(LogRequestCommand(5, "j1", 1, follow=True), sequenced=False)
        data = b""
        while True:
            chunk = (await stream.next("log_chunk")).log_chunk
            assert chunk.stream_id == 5
            data += chunk.data
            if chunk.end:
                break
        assert data == b"step 1\nstep 2\n" and not chunk.error
        stream.send_command(LogRequestCommand(6, "nope", 1), sequenced=False)
        refused = (await stream.next("log_chunk")).log_chunk
        assert refused.stream_id == 6 and refused.end and "no attempt of job nope" in refused.error
        acks = [m.ack.sequence for m in stream.history if m.WhichOneof("kind") == "ack"]
        assert 0 not in acks  # log requests take no place in the resume sequence
