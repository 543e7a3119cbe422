"""A watch of one job: its recorded events, each once and in sequence order, from where the watcher is.

Owns: `follow_job`, the events a WatchJob stream sends. A new watch starts with the job's latest recorded event
(a real one, with its sequence); a watch that resumes after a sequence the client kept starts with every event of
the job recorded after it. Both are read from the store (`Watched.replayed`), then the events the job book
publishes follow as they happen. It subscribes before it reads the store, so an event recorded in between is in
both and sent once (an event at or below the last sequence sent is dropped); a watcher that fell behind the bus
(`gateway.jobs.events`) reads what it missed from the store the same way. No event is made up: every one has its
recorded sequence. The stream ends after a terminal event. The book may lag the store by a grouped write that is
durable and not yet remembered: events read from the store then go with the job as the store holds it. Who may
watch is the caller's business (`gateway.jobs.service`); this module does no access checks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from gateway.errors import InvalidArgument
from gateway.jobs.events import EventBus
from gateway.jobs.model import Job, JobEvent
from gateway.store import Store


@dataclass(frozen=True)
class Watched:
    """One message of a watch."""

    event: JobEvent
    job: Job
    """The job after `event`; for a replayed event, the job as it was when the event was read (it may be later)."""
    replayed: bool
    """The event was recorded before the watch sent it live: read from the store (start, resume, catch-up)."""


async def follow_job(
    store: Store,
    bus: EventBus,
    job_id: str,
    current: Callable[[], Job],
    holder: str,
    after_sequence: int | None = None,
) -> AsyncIterator[Watched]:
    """The events of `job_id` for a watcher of `holder`'s share: after `after_sequence` (None: from the latest
    recorded one), until a terminal event. `current` reads the job as it is now. INVALID_ARGUMENT when
    `after_sequence` is above the job's last recorded event: it is not one this gateway gave for this job."""
    queue = bus.subscribe(job_id, holder)
    try:
        last = -1
        caught_up = False
        while True:
            if not caught_up:
                # From the store: the start, a resume, or what a watcher behind the bus missed.
                before = current()  # terminal here: its terminal event is stored already (stored, then kept)
                recorded = store.events(job_id)
                if after_sequence is not None and last < 0:
                    top = recorded[-1].sequence if recorded else 0
                    if after_sequence > top:
                        raise InvalidArgument(
                            f"after_sequence {after_sequence} is past job {job_id}'s last event ({top}); watch "
                            "again without it to start from the job's latest event"
                        )
                    missed = [e for e in recorded if e.sequence > after_sequence]
                elif last < 0:
                    missed = list(recorded[-1:])
                else:
                    missed = [e for e in recorded if e.sequence > last]
                job = before if before.state.terminal else current()
                if missed and missed[-1].state != job.state:
                    # The store is ahead of the book: a grouped write (`JobBook.commit`) is durable and not yet
                    # remembered. The job as the store holds it goes with the events read from there.
                    job = store.get_job(job_id) or job
                for event in missed:
                    yield Watched(event, job, replayed=True)
                    last = event.sequence
                    if event.state.terminal:
                        return
                if before.state.terminal:
                    return  # it ended at or before the sequence the watcher kept: nothing more will come
                if last < 0 and after_sequence is not None:
                    last = after_sequence
                caught_up = True
            item = await queue.get()
            if item is None:  # the bus dropped events for this watcher: read them from the store
                caught_up = False
                continue
            event, job = item
            if event.sequence <= last:
                continue  # already sent from the store
            yield Watched(event, job, replayed=False)
            last = event.sequence
            if event.state.terminal:
                return
    finally:
        bus.unsubscribe(job_id, queue)
