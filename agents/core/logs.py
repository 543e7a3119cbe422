"""Serving job output to the gateway's log relay: one task per log stream, reading an attempt's output
through the backend and handing it out as chunks for the stream's sender to write.

Owns: finding the attempt (live, or ended and still remembered by the runtime, whose attempt table keeps the
last `agents.core.attempts.ENDED_MEMORY` ended attempts with their handles), the start position (the
beginning, or `tail_bytes` before the current end), chunks of at most 64 KiB, following a running attempt by
polling until it has ended and all of its output is sent, flow control by credit (site.proto rule 15: a
stream sends no more output than the gateway granted it, and waits for a LogCredit when it has used it up,
without holding back any other stream), cancelling, a bound on concurrent streams (their
tasks are owned here, one per request, cancelled with the connection; a failure ends that log stream only and
is logged with its traceback), and a bounded queue of chunks waiting to be written: a stream stops reading
while its chunk waits, so a slow link holds back the reads, not the agent's memory. Chunks are best effort:
never journaled, never resent after a reconnect (a new stream drops every log stream of the old one; the
gateway ends their readers).
It does not speak gRPC (the session converts and writes chunks), nor start or stop attempts.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agents.backends.base import JobHandle
from agents.core.attempts import Attempt
from agents.core.commands import LogCancel, LogCommand, LogCredit, LogRequest
from agents.errors import AgentError

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
"""Most output bytes in one chunk (the contract's limit)."""
MAX_STREAMS = 8
"""Log streams one agent serves at once; more are refused with an error the reader sees."""
POLL_INTERVAL_S = 0.25
"""How often a followed attempt's output is read again once everything written so far is sent."""
OUTGOING_CHUNKS = 8
"""Chunks read but not yet written to the gateway, across all streams (at most 512 KiB)."""
TAIL_PROBE_BYTES = CHUNK_BYTES
"""First offset probed when looking for the end of the output (it then doubles)."""


@dataclass(frozen=True)
class LogChunk:
    """Agent -> gateway: part of a log stream's output, in order."""

    stream_id: int
    data: bytes = b""
    end: bool = False
    """The last chunk of the stream: the attempt ended (or follow was not asked for), or `error` says why not."""
    error: str = ""
    """Why the site cannot serve this log; set only with `end`."""


class _Credit:
    """What one stream may still send, in bytes of output (site.proto rule 15); unlimited when the gateway
    granted no window (one older than credit, rule 17)."""

    def __init__(self, window_bytes: int) -> None:
        self.left: int | None = window_bytes or None
        self._more = asyncio.Event()

    def grant(self, size: int) -> None:
        if self.left is not None:
            self.left += size
            self._more.set()

    @property
    def used_up(self) -> bool:
        return self.left is not None and self.left <= 0

    async def wait(self) -> None:
        """Until the gateway grants more."""
        while self.used_up:
            self._more.clear()
            await self._more.wait()

    def allowance(self) -> int:
        """The most output the stream may send now."""
        return CHUNK_BYTES if self.left is None else max(0, min(CHUNK_BYTES, self.left))

    def spend(self, size: int) -> None:
        if self.left is not None:
            self.left -= size


class AttemptOutput(Protocol):
    """Where the log server finds attempts and reads their output: the runtime."""

    def attempt(self, job_id: str, epoch: int) -> Attempt | None: ...

    async def read_output(self, handle: JobHandle, offset: int, limit: int) -> bytes: ...


class LogServer:
    """The log streams of one connection. Every method must be called on the agent's event loop."""

    def __init__(
        self,
        source: AttemptOutput,
        wake: Callable[[], None],
        *,
        max_streams: int = MAX_STREAMS,
        poll_interval_s: float = POLL_INTERVAL_S,
        outgoing_chunks: int = OUTGOING_CHUNKS,
    ) -> None:
        self._source = source
        self._wake = wake
        self._max_streams = max_streams
        self._poll_s = poll_interval_s
        self._streams: dict[int, asyncio.Task[None]] = {}
        self._credits: dict[int, _Credit] = {}
        self._ready: asyncio.Queue[LogChunk] = asyncio.Queue(maxsize=outgoing_chunks)
        # Refusals are answered at once without a task; each is one small message per request the gateway made.
        self._refusals: deque[LogChunk] = deque()

    @property
    def active(self) -> int:
        """Streams being served now."""
        return len(self._streams)

    def handle(self, command: LogCommand) -> None:
        """Start serving a LogRequest, stop the stream a LogCancel names, or add a LogCredit's bytes to its
        stream's credit (unknown ids are ignored)."""
        if isinstance(command, LogCredit):
            if (credit := self._credits.get(command.stream_id)) is not None:
                credit.grant(command.bytes)
            return
        if isinstance(command, LogCancel):
            self._credits.pop(command.stream_id, None)
            task = self._streams.pop(command.stream_id, None)
            if task is not None:
                log.info("log stream %d cancelled by the gateway", command.stream_id)
                task.cancel()
            return
        self._start(command)

    def take(self, limit: int) -> list[LogChunk]:
        """Up to `limit` chunks ready to be written, oldest first; taking them lets their streams read on."""
        chunks: list[LogChunk] = []
        while self._refusals and len(chunks) < limit:
            chunks.append(self._refusals.popleft())
        while len(chunks) < limit:
            try:
                chunks.append(self._ready.get_nowait())
            except asyncio.QueueEmpty:
                break
        if self._refusals or not self._ready.empty():
            self._wake()  # the sender comes back for the rest
        return chunks

    def close(self) -> None:
        """Stop every stream (the connection is gone); chunks not yet written are dropped."""
        for task in self._streams.values():
            task.cancel()
        self._streams.clear()
        self._credits.clear()
        self._refusals.clear()
        while not self._ready.empty():
            self._ready.get_nowait()

    def _start(self, request: LogRequest) -> None:
        if request.stream_id in self._streams:
            self._refuse(request, f"log stream {request.stream_id} is already open on this site")
            return
        if len(self._streams) >= self._max_streams:
            self._refuse(request, f"the site serves at most {self._max_streams} log streams at once; try again later")
            return
        attempt = self._source.attempt(request.job_id, request.epoch)
        if attempt is None:
            self._refuse(
                request,
                f"the site has no attempt of job {request.job_id} at epoch {request.epoch}: it never ran here, "
                "or it ended too long ago (or before the agent restarted) for its output to be kept",
            )
            return
        if attempt.handle is None:
            why = f": {attempt.message}" if attempt.message else ""
            self._refuse(request, f"epoch {request.epoch} of job {request.job_id} never started here{why}")
            return
        credit = _Credit(request.window_bytes)
        task = asyncio.create_task(
            self._serve(request, attempt, attempt.handle, credit), name=f"log-{request.stream_id}"
        )
        self._streams[request.stream_id] = task
        self._credits[request.stream_id] = credit
        task.add_done_callback(lambda done: self._forget(request.stream_id, done))

    def _forget(self, stream_id: int, task: asyncio.Task[None]) -> None:
        if self._streams.get(stream_id) is task:
            del self._streams[stream_id]
            self._credits.pop(stream_id, None)
        if not task.cancelled() and (error := task.exception()) is not None:  # `_serve` ends each stream itself;
            log.error("log stream %d failed", stream_id, exc_info=error)  # what escapes it is a bug: say so

    def _refuse(self, request: LogRequest, error: str) -> None:
        log.info(
            "log stream %d for job %s epoch %d refused: %s", request.stream_id, request.job_id, request.epoch, error
        )
        self._refusals.append(LogChunk(request.stream_id, end=True, error=error))
        self._wake()

    async def _serve(self, request: LogRequest, attempt: Attempt, handle: JobHandle, credit: _Credit) -> None:
        stream = request.stream_id
        try:
            offset = 0
            if request.tail_bytes:
                offset = max(0, await self._end_offset(handle) - request.tail_bytes)
            while True:
                # Read the state before the output: once an ended attempt's output reads empty, nothing is left.
                ended = attempt.state.is_final
                if credit.used_up:  # nothing is read ahead of what may be sent; the end chunk needs no credit
                    if (ended or not request.follow) and not await self._source.read_output(handle, offset, 1):
                        break
                    await credit.wait()
                    continue
                allowed = credit.allowance()
                data = (await self._source.read_output(handle, offset, allowed))[:allowed]
                if data:
                    offset += len(data)
                    credit.spend(len(data))
                    await self._emit(LogChunk(stream, data))
                    continue
                if ended or not request.follow:
                    break
                await asyncio.sleep(self._poll_s)
            final = LogChunk(stream, end=True)
        except AgentError as exc:
            final = LogChunk(stream, end=True, error=f"the site could not read the output: {exc.message}")
        except Exception as exc:  # a backend bug must end this stream, never the agent's connection
            log.exception("log stream %d: reading job %s epoch %d failed", stream, request.job_id, request.epoch)
            final = LogChunk(stream, end=True, error=f"the site could not read the output ({type(exc).__name__})")
        await self._emit(final)

    async def _emit(self, chunk: LogChunk) -> None:
        await self._ready.put(chunk)
        self._wake()

    async def _end_offset(self, handle: JobHandle) -> int:
        """The current size of the output. The backend contract has no size call, so probe: the end is the
        first offset at which a 1-byte read comes back empty (about 2 log2(size) small reads)."""

        async def has_byte(offset: int) -> bool:
            return bool(await self._source.read_output(handle, offset, 1))

        low, high = 0, TAIL_PROBE_BYTES
        while await has_byte(high):
            low, high = high + 1, high * 2
        while low < high:  # the end lies in [low, high]
            middle = (low + high) // 2
            if await has_byte(middle):
                low = middle + 1
            else:
                high = middle
        return low
