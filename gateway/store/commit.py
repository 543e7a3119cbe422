"""Group commit: many concurrent job creations become one durable transaction, off the event loop.

Owns: collecting `create_job` calls that arrive while a commit is in flight and writing them together in a
worker thread, so that one fsync acknowledges a whole batch and the event loop keeps serving while the disk
works. Every caller still gets its answer only after its job is durable.
"""

from __future__ import annotations

import asyncio

from gateway.jobs.model import Job, JobEvent
from gateway.store.base import Store

MAX_BATCH = 512


class GroupCommitter:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[tuple[Job, JobEvent, asyncio.Future[tuple[Job, bool]]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def create_job(self, job: Job, event: JobEvent) -> tuple[Job, bool]:
        future: asyncio.Future[tuple[Job, bool]] = asyncio.get_running_loop().create_future()
        self._pending.append((job, event, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await future

    async def settle(self) -> None:
        """Wait until every write handed to it has been made (or failed): the gateway stops after this."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                results = await asyncio.to_thread(self.store.create_jobs, [(job, event) for job, event, _ in batch])
            except Exception as exc:  # the whole batch failed: every caller hears it, none is acknowledged
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
