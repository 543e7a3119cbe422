"""A gang's part outcomes are durable: what its parts reported before a gateway restart still adds up after it.

The gateway is real (a core over a SQLite file, its Dispatcher); a restart is a new core and Dispatcher
over the same file, with the sites reconnecting. The agents' updates acknowledged before the restart are not
replayed (their cursor is durable), so the gateway must know from the store which parts already finished.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from gateway.jobs.model import JobState, Placement
from gateway.sites.dispatcher import RunningAttempt, SiteUpdate
from gateway.sites.registry import CancelCommand, Command
from gateway.store.codec import job_from_json, job_to_json

from .gangworld import FakeSite, GangWorld


class Parts:
    """Each site's updates for one gang attempt, with the site's own increasing sequence."""

    def __init__(self, w: GangWorld, job_id: str) -> None:
        self.w, self.job_id, self.epoch = w, job_id, w.job(job_id).epoch
        self.sequences: dict[str, int] = defaultdict(int)

    def report(self, site: str, state: JobState, exit_code: int = 0, replay: bool = False) -> None:
        if not replay:
            self.sequences[site] += 1
        update = SiteUpdate(
            self.job_id, self.epoch, state, self.sequences[site], self.w.clock(), exit_code, device_indices=(0,)
        )
        self.w.dispatcher.update(site, update)

    def states(self) -> list[JobState]:
        return [e.state for e in self.w.store.events(self.job_id)]


async def running_gang(tmp_path: Path) -> tuple[GangWorld, Parts]:
    w = GangWorld([FakeSite("a", 8), FakeSite("b", 8)], store_url=f"sqlite:///{tmp_path / 'gateway.db'}")
    job = await w.submit(12)
    w.run()
    assert w.state(job.job_id) is JobState.DISPATCHED
    parts = Parts(w, job.job_id)
    parts.report("a", JobState.RUNNING)
    parts.report("b", JobState.RUNNING)
    assert w.state(job.job_id) is JobState.RUNNING
    return w, parts


async def test_a_part_that_succeeded_before_a_restart_still_counts_after_it(tmp_path: Path) -> None:
    w, parts = await running_gang(tmp_path)
    parts.report("a", JobState.SUCCEEDED)
    assert w.state(parts.job_id) is JobState.RUNNING  # waiting for b
    w.restart(running={"b": [RunningAttempt(parts.job_id, parts.epoch, JobState.RUNNING)]})
    stored = w.job(parts.job_id)
    assert stored.state is JobState.RUNNING
    assert {p.site: p.state for p in stored.placements} == {"a": JobState.SUCCEEDED, "b": JobState.RUNNING}
    parts.report("a", JobState.SUCCEEDED, replay=True)  # acknowledged before the restart: changes nothing
    assert w.state(parts.job_id) is JobState.RUNNING
    parts.report("b", JobState.SUCCEEDED)
    assert w.state(parts.job_id) is JobState.SUCCEEDED
    parts.report("b", JobState.SUCCEEDED, replay=True)
    parts.report("b", JobState.SUCCEEDED)  # said again under a new sequence: the job has ended already
    assert w.state(parts.job_id) is JobState.SUCCEEDED
    assert parts.states().count(JobState.SUCCEEDED) == 1


async def test_a_part_that_failed_before_a_restart_keeps_the_job_failed_after_a_late_success(tmp_path: Path) -> None:
    w, parts = await running_gang(tmp_path)
    parts.report("a", JobState.FAILED, exit_code=3)
    assert w.state(parts.job_id) is JobState.FAILED
    assert any(isinstance(c, CancelCommand) for c in _sent(w, "b"))
    w.restart(running={"b": [RunningAttempt(parts.job_id, parts.epoch, JobState.RUNNING)]})
    assert any(isinstance(c, CancelCommand) and c.job_id == parts.job_id for c in _sent(w, "b"))
    parts.report("b", JobState.SUCCEEDED)  # b finished before its cancel arrived
    ended = w.job(parts.job_id)
    assert ended.state is JobState.FAILED and ended.exit_code == 3
    assert JobState.SUCCEEDED not in parts.states() and parts.states().count(JobState.FAILED) == 1


def _sent(w: GangWorld, site: str) -> list[Command]:
    outbox, sent = w.sessions[site].outbox, []
    while not outbox.empty():
        item = outbox.get_nowait()
        if isinstance(item, tuple):
            sent.append(item[1])
    return sent


async def test_a_job_stored_before_parts_kept_their_state_reads_as_parts_not_yet_reported(tmp_path: Path) -> None:
    w, parts = await running_gang(tmp_path)
    parts.report("a", JobState.SUCCEEDED)
    job = w.job(parts.job_id)
    assert job_from_json(job_to_json(job)) == job  # the part states round-trip
    data = json.loads(job_to_json(job))
    data["placements"] = [row[:4] for row in data["placements"]]  # a row written by the previous release
    old = job_from_json(json.dumps(data))
    assert old.placements == tuple(
        Placement(p.site, p.accelerator_class, p.cards, p.device_indices) for p in job.placements
    )
    assert all(p.state is None for p in old.placements)
