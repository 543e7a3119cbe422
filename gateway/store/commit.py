"""Group commit: many concurrent writes become one durable transaction, off the event loop.

Owns: collecting the items callers hand in while a commit is in flight, handing them to one commit function
as a batch (at most `MAX_BATCH`, in arrival order), and answering each caller with its own result only once
that commit returned: one fsync acknowledges a whole batch and the event loop keeps serving while the disk
works. It does not know what an item is: the commit function (job creations here, the job book's site updates)
decides, runs its write in a worker thread, and returns one result per item (`Refused(error)` for an item it
refused alone: a result may itself be an exception object, such as the refusal of a receipt riding on an update
that was applied, and is then still a result); a commit that raises fails its whole batch, and no caller of it
hears success.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from gateway.jobs.model import Job, JobEvent
from gateway.store.base import Store

MAX_BATCH = 512

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class Refused:
    """A commit function's answer for one item it refused alone: its caller gets `error` raised."""

    error: BaseException


Commit = Callable[[list[Item]], Awaitable[Sequence[Result | Refused]]]
"""Makes one batch durable and returns one result per item, in order (`Refused`: that item alone refused)."""


class GroupCommitter(Generic[Item, Result]):
    def __init__(self, commit: Commit[Item, Result], max_batch: int = MAX_BATCH) -> None:
        self._commit = commit
        self._max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task[None] | None = None

    def enqueue(self, item: Item) -> asyncio.Future[Result]:
        """Hand `item` in now (its place in the order is taken at once); the future holds its answer."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return future

    async def submit(self, item: Item) -> Result:
        return await self.enqueue(item)

    async def settle(self) -> None:
        """Wait until every write handed to it has been made (or failed): the gateway stops after this."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            try:
                results = await self._commit([item for item, _ in batch])
            except Exception as exc:  # the whole batch failed: every caller hears it, none is acknowledged
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Refused):
                    future.set_exception(result.error)
                else:
                    future.set_result(result)


def job_creations(store: Store) -> GroupCommitter[tuple[Job, JobEvent], tuple[Job, bool]]:
    """Job creations (with their first event), many per transaction (`Store.create_jobs`), in a worker thread."""

    async def commit(batch: list[tuple[Job, JobEvent]]) -> Sequence[tuple[Job, bool]]:
        return await asyncio.to_thread(store.create_jobs, batch)

    return GroupCommitter(commit)
