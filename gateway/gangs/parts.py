"""How the parts of a dispatched gang add up to the job's state.

Owns: the rule, as a pure function, for a job leased to several sites (one Launch per part, one epoch): the job
is RUNNING when every part runs and SUCCEEDED when every part succeeded; any part that fails, is cancelled by
its site, lost or preempted ends the attempt, and the other parts are cancelled. A part's report that does not
change the job's state is still recorded (its devices, that it finished). It does not apply anything:
`gateway.sites.dispatcher` makes the outcome durable and sends the cancels.
Each part's last reported state is kept in its placement (`Placement.state`), so it is saved with the
transition that records the report and read back after a gateway restart: a part that succeeded before the
restart still counts after it. A part also counts as running once it reported its devices (rows stored before
parts kept their state).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gateway.jobs.model import Job, JobState, Placement

ENDS_ATTEMPT = frozenset({JobState.FAILED, JobState.CANCELLED, JobState.LOST, JobState.PREEMPTED})


@dataclass(frozen=True)
class GangOutcome:
    state: JobState  # the job's state after this report (its current state when only a part changed)
    message: str
    placements: tuple[Placement, ...]
    cancel_sites: tuple[str, ...] = ()  # the other parts to stop, when the attempt ended


def part_reported(job: Job, site: str, state: JobState, devices: tuple[int, ...], message: str = "") -> GangOutcome:
    """The job after the part at `site` reported `state`; the other parts' states are read from the placements."""
    placements = tuple(
        replace(p, device_indices=devices or p.device_indices, state=state) if p.site == site else p
        for p in job.placements
    )
    finished = {p.site for p in placements if p.state == JobState.SUCCEEDED}
    others = tuple(p.site for p in placements if p.site not in finished | {site})
    detail = f": {message}" if message else ""
    if state in ENDS_ATTEMPT:
        # A gang does not run with a part missing; the site's own word decides how the attempt ends.
        ending = JobState.FAILED if state == JobState.CANCELLED else state
        if ending == JobState.PREEMPTED and job.state == JobState.DISPATCHED:
            ending = JobState.LOST  # the gang never ran whole, so there is nothing to preempt: a new attempt
        text = f"gang part at {site} {state.value.lower()}{detail}; the other parts are cancelled"
        return GangOutcome(ending, text, placements, others)
    if state == JobState.RUNNING:
        if all(p.state == JobState.RUNNING or p.device_indices or p.site in finished for p in placements):
            return GangOutcome(JobState.RUNNING, f"every part of the gang runs (last: {site})", placements)
        return GangOutcome(job.state, f"gang part at {site} runs; waiting for the others", placements)
    if state == JobState.SUCCEEDED:
        if finished >= {p.site for p in placements}:
            return GangOutcome(JobState.SUCCEEDED, f"every part of the gang succeeded (last: {site})", placements)
        return GangOutcome(job.state, f"gang part at {site} succeeded; waiting for the others", placements)
    return GangOutcome(job.state, f"gang part at {site}: {state.value.lower()}{detail}", placements)
