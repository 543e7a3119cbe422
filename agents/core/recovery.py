"""Re-attaching, after an agent restart, the attempts a previous run started and did not see end.

Owns: walking the journal's started attempts, claiming their devices again from the pools (before any new launch
is taken, so no device goes to two live jobs), asking the backend to `adopt` each one (by the labels or names it
put on it, or the record it journaled), and marking the ones the backend no longer knows (or could not look
for) LOST with a message saying the agent lost track of them: nobody saw them end, so they did not fail, and the
gateway queues their jobs again by its policy. It does not register, watch,
report or sign anything: the runtime (`SiteRuntime.restore`) takes each attempt this yields and either watches
it or ends it (with its receipt), so a lost attempt is reported, never silently forgotten.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping

from agents.backends.base import Backend, LaunchSpec
from agents.core.attempts import Attempt
from agents.core.commands import Launch
from agents.core.devices import DevicePool
from agents.core.model import JobState
from agents.journal.base import StartedAttempt

log = logging.getLogger(__name__)

LOST_TRACK_MESSAGE = (
    "the site agent lost track of this attempt: it was running when the agent stopped, and after the restart "
    "the {backend} backend no longer knows it"
)


async def reattach(
    started: Iterable[StartedAttempt],
    pools: Mapping[str, DevicePool],
    backend: Backend,
    spec: Callable[[Launch, DevicePool, tuple[int, ...]], LaunchSpec],
) -> AsyncIterator[Attempt]:
    """Each journaled attempt in turn: re-attached (its `handle` set, state RUNNING) or lost (`handle` None,
    state LOST with LOST_TRACK_MESSAGE). Devices are claimed from its pool either way; a lost one's devices
    are for the caller to release when it ends it. A backend that raises while looking never stops the
    walk: that attempt is lost."""
    for entry in started:
        launch = entry.launch
        pool = pools.get(launch.accelerator_class)
        devices = pool.claim(entry.devices) if pool is not None else ()
        attempt = Attempt(launch=launch, devices=devices, started_at=entry.start_time)
        try:
            attempt.handle = (
                None if pool is None else await backend.adopt(spec(launch, pool, devices), entry.backend_record)
            )
        except Exception:  # a backend that cannot look must not stop the agent; the attempt is reported lost
            log.exception("job %s epoch %d: the backend failed to look for the attempt", *attempt.key)
        if attempt.handle is None:
            attempt.state, attempt.message = JobState.LOST, LOST_TRACK_MESSAGE.format(backend=backend.name)
        else:
            log.info("job %s epoch %d: re-attached after a restart", *attempt.key)
        yield attempt
