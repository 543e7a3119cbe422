"""In-memory fan-out of job events to watchers (WatchJob). Lossy by design for slow watchers: a watcher that
falls `MAX_BACKLOG` events behind is told to resync from the store instead of holding gateway memory.

Owns: the per-job subscriber queues of watchers and their backlog bound; events are published by the job book.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from gateway.jobs.model import Job, JobEvent

MAX_BACKLOG = 256


class EventBus:
    def __init__(self) -> None:
        self._watchers: dict[str, set[asyncio.Queue[tuple[JobEvent, Job] | None]]] = defaultdict(set)

    def subscribe(self, job_id: str) -> asyncio.Queue[tuple[JobEvent, Job] | None]:
        queue: asyncio.Queue[tuple[JobEvent, Job] | None] = asyncio.Queue(MAX_BACKLOG)
        self._watchers[job_id].add(queue)
        return queue

    def unsubscribe(self, job_id: str, queue: asyncio.Queue[tuple[JobEvent, Job] | None]) -> None:
        watchers = self._watchers.get(job_id)
        if watchers is not None:
            watchers.discard(queue)
            if not watchers:
                del self._watchers[job_id]

    def publish(self, event: JobEvent, job: Job) -> None:
        for queue in list(self._watchers.get(event.job_id, ())):
            try:
                queue.put_nowait((event, job))
            except asyncio.QueueFull:
                # None tells the watcher it missed events and must re-read the job.
                queue.get_nowait()
                queue.put_nowait(None)
