"""The rows both store engines write for a job, beside its JSON body: its events and its attempts' usage.

Owns: turning a `JobEvent` into the `events` table's columns and a job whose attempt ended into the `usage`
table's rows (card-hours per placement), so that SQLite and PostgreSQL record exactly the same thing.
"""

from __future__ import annotations

from gateway.jobs.model import ATTEMPT_ENDS, Job, JobEvent


def event_row(event: JobEvent) -> tuple[str, str, str, int, str, str]:
    """(job_id, state, time, attempt, site, message): the `events` columns but the sequence the engine assigns."""
    return (event.job_id, event.state.value, event.time.isoformat(), event.attempt, event.site, event.message)


def usage_rows(job: Job) -> list[tuple[str, int, str, str, str, int, str, str, float]]:
    """The `usage` rows of a job whose attempt just ended (a preempted attempt's hours count too), one per
    accelerator class (the table's key: a gang's parts of one class at several sites add up in one row):
    (job_id, attempt, tenant, project, class, cards, start, end, card-hours). None otherwise."""
    ended = job.state.terminal or job.state in ATTEMPT_ENDS
    if not ended or job.start_time is None or job.end_time is None:
        return []
    hours = max(0.0, (job.end_time - job.start_time).total_seconds() / 3600)
    start, end = job.start_time.isoformat(), job.end_time.isoformat()
    tenant, project = job.spec.tenant, job.spec.project
    cards: dict[str, int] = {}  # per class, in placement order
    for p in job.placements:
        cards[p.accelerator_class] = cards.get(p.accelerator_class, 0) + p.cards
    return [(job.job_id, job.attempt, tenant, project, cls, n, start, end, hours * n) for cls, n in cards.items()]
