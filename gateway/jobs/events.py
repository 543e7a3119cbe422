"""In-memory fan-out of job events to watchers (WatchJob). Lossy by design for slow watchers: a watcher that
falls `MAX_BACKLOG` events behind is told to resync from the store instead of holding gateway memory.

Owns: the per-job subscriber queues of watchers and their backlog bound, and the bound on watches: a share (a
tenant, or an admin or site principal) holds at most `SHARE_WATCHES` at once and the gateway `MAX_WATCHES`, so
one tenant opening watches without end cannot take the gateway's memory or every other tenant's watches. Events
are published by the job book.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from gateway.errors import ResourceExhausted
from gateway.jobs.model import Job, JobEvent

MAX_BACKLOG = 256
SHARE_WATCHES = 64
"""Watches one share (`Principal.share`: a tenant's users together) holds at once."""
MAX_WATCHES = 4096
"""Watches the gateway holds at once (each at most MAX_BACKLOG events behind)."""

Watch = asyncio.Queue[tuple[JobEvent, Job] | None]


class EventBus:
    def __init__(self, *, share_watches: int = SHARE_WATCHES, max_watches: int = MAX_WATCHES) -> None:
        self._watchers: dict[str, set[Watch]] = defaultdict(set)
        self._holders: dict[int, str] = {}  # id(queue) -> its share
        self._share_watches = share_watches
        self._max_watches = max_watches

    def watches(self, holder: str) -> int:
        return sum(1 for h in self._holders.values() if h == holder)

    def subscribe(self, job_id: str, holder: str = "") -> Watch:
        """A new watch of `job_id` for `holder`'s share; ResourceExhausted (TOO_MANY_WATCHES) when that share
        or the gateway's whole is in use."""
        for used, most, limit in (
            (self.watches(holder), self._share_watches, "share_watches"),
            (len(self._holders), self._max_watches, "gateway_watches"),
        ):
            if used >= most:
                whose = "your tenant's share" if limit == "share_watches" else "the gateway's whole"
                raise ResourceExhausted(
                    f"{whose} of job watches is in use ({most} at once); close a watch you no longer read",
                    reason="TOO_MANY_WATCHES",
                    metadata={"limit": limit, "max": str(most)},
                )
        queue: Watch = asyncio.Queue(MAX_BACKLOG)
        self._watchers[job_id].add(queue)
        self._holders[id(queue)] = holder
        return queue

    def unsubscribe(self, job_id: str, queue: Watch) -> None:
        self._holders.pop(id(queue), None)
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
