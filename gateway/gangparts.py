"""How the parts of a dispatched gang add up to the job's state.

Owns: the rule, as a pure function, for a job leased to several sites (one Launch per part, one epoch): the job
is RUNNING when every part runs and SUCCEEDED when every part succeeded; any part that fails, is cancelled by
its site, lost or preempted ends the attempt, and the other parts are cancelled. A part's report that does not
change the job's state is still recorded (its devices, that it finished). It does not apply anything:
`gateway.dispatch` makes the outcome durable and sends the cancels.
A part counts as running once it reported its devices (durable, in the placement); which parts already
succeeded is kept in memory by the caller (`PartBook`).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.model import Job, JobState, Placement

ENDS_ATTEMPT = frozenset({JobState.FAILED, JobState.CANCELLED, JobState.LOST, JobState.PREEMPTED})


@dataclass(frozen=True)
class GangOutcome:
    state: JobState  # the job's state after this report (its current state when only a part changed)
    message: str
    placements: tuple[Placement, ...]
    cancel_sites: tuple[str, ...] = ()  # the other parts to stop, when the attempt ended


def part_reported(
    job: Job, site: str, state: JobState, devices: tuple[int, ...], finished: frozenset[str], message: str = ""
) -> GangOutcome:
    """The job after the part at `site` reported `state`; `finished` names the parts that already succeeded."""
    placements = tuple(
        Placement(p.site, p.accelerator_class, p.cards, devices or p.device_indices) if p.site == site else p
        for p in job.placements
    )
    others = tuple(p.site for p in job.placements if p.site != site and p.site not in finished)
    detail = f": {message}" if message else ""
    if state in ENDS_ATTEMPT:
        # A gang does not run with a part missing; the site's own word decides how the attempt ends.
        ending = JobState.FAILED if state == JobState.CANCELLED else state
        if ending == JobState.PREEMPTED and job.state == JobState.DISPATCHED:
            ending = JobState.LOST  # the gang never ran whole, so there is nothing to preempt: a new attempt
        text = f"gang part at {site} {state.value.lower()}{detail}; the other parts are cancelled"
        return GangOutcome(ending, text, placements, others)
    if state == JobState.RUNNING:
        if all(p.device_indices or p.site in finished for p in placements):
            return GangOutcome(JobState.RUNNING, f"every part of the gang runs (last: {site})", placements)
        return GangOutcome(job.state, f"gang part at {site} runs; waiting for the others", placements)
    if state == JobState.SUCCEEDED:
        if finished | {site} >= {p.site for p in job.placements}:
            return GangOutcome(JobState.SUCCEEDED, f"every part of the gang succeeded (last: {site})", placements)
        return GangOutcome(job.state, f"gang part at {site} succeeded; waiting for the others", placements)
    return GangOutcome(job.state, f"gang part at {site}: {state.value.lower()}{detail}", placements)


class PartBook:
    """Which parts of each gang attempt have succeeded, by (job, epoch)."""

    def __init__(self) -> None:
        self._finished: dict[tuple[str, int], frozenset[str]] = {}

    def finished(self, job_id: str, epoch: int) -> frozenset[str]:
        return self._finished.get((job_id, epoch), frozenset())

    def record(self, job_id: str, epoch: int, site: str, state: JobState) -> None:
        if state == JobState.SUCCEEDED:
            self._finished[(job_id, epoch)] = self.finished(job_id, epoch) | {site}

    def forget(self, job_id: str, epoch: int) -> None:
        self._finished.pop((job_id, epoch), None)
