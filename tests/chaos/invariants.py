"""The one check every chaos test runs after its fault, once the sites are back.

Owns: `check_federation`, which reads the store (SQLite read-only beside the running gateway, or PostgreSQL)
and the gateway's public API, and asserts, naming the offending job:
1. nothing is stuck: within a bounded wait every job is terminal;
2. every acknowledged job is present exactly once, by its request id and by its id;
3. at most one live epoch per job: in the job's events every attempt ends before the next is dispatched, and at
   the sites (each attempt's heartbeats, on the machine's monotonic clock) no two attempts of a job overlap;
4. every attempt that ran and ended with a receipt state has exactly one usage receipt per site, and an attempt
   that was LOST has none;
5. no capacity is leaked: the gateway leases no card at any site, and every connected site reports all it offers
   as free.
It does not make faults (the fault modules do) nor start processes (`tests.chaos.fleet`, `tests.chaos.sites`).
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.jobs.model import Job, JobEvent, JobState
from gateway.store import Store, open_store
from gateway.transport.client import FederationClient
from gateway.usage.receipts import RECEIPT_STATES, SettledReceipt
from tests.chaos.sites import TENANT, ChaosAgent
from tests.waiting import eventually

ATTEMPT_END = frozenset({*RECEIPT_STATES, JobState.LOST, JobState.REJECTED})


@dataclass(frozen=True)
class Outcome:
    """What the check saw, for a test's own further assertions."""

    jobs: dict[str, Job]
    events: dict[str, tuple[JobEvent, ...]]
    receipts: tuple[SettledReceipt, ...]


def check_federation(
    store_url: str,
    acknowledged: Mapping[str, str],
    admin: FederationClient,
    agents: Iterable[ChaosAgent] = (),
    *,
    settle_s: float = 60,
) -> Outcome:
    """Assert the five invariants (module docstring) over the store at `store_url` and the gateway `admin` speaks
    to; `acknowledged` maps each request id that got a reply to the job id replied; `agents`: whose attempt
    folders to read for overlapping attempts. Waits up to `settle_s` for jobs to end and capacity to come back."""
    store = open_store(store_url, read_only=True)
    try:
        eventually(
            lambda: not _unfinished(store),
            timeout=settle_s,
            what="every job to be terminal",
            detail=lambda: f"not terminal: {_unfinished(store)}",
        )
        jobs = {job.job_id: job for job in _all_jobs(store)}
        events = {job_id: store.events(job_id) for job_id in jobs}
        receipts = _all_receipts(store)
    finally:
        store.close()
    _exactly_once(jobs, acknowledged)
    for job_id, job_events in events.items():
        _one_attempt_at_a_time(job_id, job_events)
    _no_overlap_at_sites(agents)
    _receipts_match(jobs, events, receipts)
    _no_capacity_leaked(admin, settle_s)
    return Outcome(jobs, events, receipts)


def _all_jobs(store: Store) -> list[Job]:
    jobs: list[Job] = []
    token = ""
    while True:
        page = store.list_jobs(None, page_size=500, page_token=token)
        jobs.extend(page.jobs)
        token = page.next_page_token
        if not token:
            return jobs


def _unfinished(store: Store) -> dict[str, str]:
    return {job.job_id: job.state.value for job in _all_jobs(store) if not job.state.terminal}


def _all_receipts(store: Store) -> tuple[SettledReceipt, ...]:
    out: list[SettledReceipt] = []
    token = ""
    start, end = datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=1)
    while True:
        page = store.list_receipts(None, start, end, page_size=500, page_token=token)
        out.extend(page.receipts)
        token = page.next_page_token
        if not token:
            return tuple(out)


def _exactly_once(jobs: Mapping[str, Job], acknowledged: Mapping[str, str]) -> None:
    by_request = Counter((job.spec.tenant, job.request_id) for job in jobs.values() if job.request_id)
    for request_id, job_id in acknowledged.items():
        count = by_request[(TENANT, request_id)]
        assert count == 1, f"request {request_id} (job {job_id}) is stored {count} times, not once"
        assert job_id in jobs, f"job {job_id} (request {request_id}) was acknowledged and is not in the store"
        assert jobs[job_id].request_id == request_id, f"job {job_id} carries request {jobs[job_id].request_id!r}"
    assert len(set(acknowledged.values())) == len(acknowledged), "two requests were acknowledged with one job id"


def _one_attempt_at_a_time(job_id: str, events: tuple[JobEvent, ...]) -> None:
    """A dispatch (or a gang's reservation) opens an attempt; it must be closed before the next one opens."""
    open_attempt: tuple[int, JobState] | None = None
    for event in sorted(events, key=lambda e: e.sequence):
        if event.state in (JobState.DISPATCHED, JobState.RESERVING):
            # A gang's reservation opens its attempt and the dispatch that follows continues it; a gang's parts
            # each add an event of the same attempt.
            continues = (
                event.state == JobState.DISPATCHED
                and open_attempt is not None
                and (open_attempt[1] == JobState.RESERVING or open_attempt[0] == event.attempt)
            )
            assert open_attempt is None or continues, (
                f"job {job_id}: attempt {event.attempt} dispatched while attempt {open_attempt[0]} was live "
                f"(events: {_describe(events)})"
            )
            open_attempt = (event.attempt, event.state)
        elif event.state in ATTEMPT_END or event.state in (JobState.QUEUED, JobState.CANCELLED):
            open_attempt = None


def _no_overlap_at_sites(agents: Iterable[ChaosAgent]) -> None:
    spans: dict[str, list[tuple[float, float, str, int]]] = defaultdict(list)
    for agent in agents:
        for (job_id, epoch), (first, last) in agent.spans().items():
            spans[job_id].append((first, last, agent.site, epoch))
    for job_id, attempts in spans.items():
        by_epoch: dict[int, list[tuple[float, float, str, int]]] = defaultdict(list)
        for span in attempts:
            by_epoch[span[3]].append(span)
        ordered = sorted(by_epoch.items())
        for (epoch, older), (later_epoch, newer) in itertools.pairwise(ordered):
            ended = max(s[1] for s in older)
            began = min(s[0] for s in newer)
            assert ended < began, (
                f"job {job_id}: epoch {epoch} at {[s[2] for s in older]} still ran {ended - began:.2f} s after "
                f"epoch {later_epoch} started at {[s[2] for s in newer]}"
            )


def _receipts_match(
    jobs: Mapping[str, Job], events: Mapping[str, tuple[JobEvent, ...]], receipts: tuple[SettledReceipt, ...]
) -> None:
    per_site: Counter[tuple[str, int, str]] = Counter()
    per_attempt: dict[tuple[str, int], list[str]] = defaultdict(list)
    for settled in receipts:
        record = settled.record
        assert record is not None, f"a settled receipt does not parse: {settled.describe()}"
        per_site[(record.job_id, record.epoch, record.site)] += 1
        per_attempt[(record.job_id, record.attempt)].append(record.site)
    for (job_id, epoch, site), count in per_site.items():
        assert count == 1, f"job {job_id} epoch {epoch} at {site} has {count} receipts, not one"
    for job_id, job_events in events.items():
        for attempt, ran, end in _attempts(job_events):
            got = per_attempt.get((job_id, attempt), [])
            if end == JobState.LOST:
                assert not got, f"job {job_id} attempt {attempt} was LOST and has receipts from {got}"
            elif ran and end in RECEIPT_STATES:
                assert got, f"job {job_id} attempt {attempt} ran and ended {end.value} without a usage receipt"
        job = jobs[job_id]
        if job.state == JobState.SUCCEEDED:
            got = sorted(per_attempt.get((job_id, job.attempt), []))
            assert got == sorted(job.sites), f"job {job_id} SUCCEEDED at {job.sites} with receipts from {got}"


def _attempts(events: tuple[JobEvent, ...]) -> list[tuple[int, bool, JobState | None]]:
    """(attempt, whether it reached RUNNING, the state that first ended it) for each attempt of a job."""
    seen: dict[int, list[object]] = {}
    for event in sorted(events, key=lambda e: e.sequence):
        if event.state in (JobState.RESERVING, JobState.DISPATCHED):
            seen.setdefault(event.attempt, [False, None])
        elif event.state == JobState.RUNNING and event.attempt in seen:
            seen[event.attempt][0] = True
        elif event.state in ATTEMPT_END and event.attempt in seen and seen[event.attempt][1] is None:
            seen[event.attempt][1] = event.state
    return [(a, bool(s[0]), s[1]) for a, s in seen.items()]  # type: ignore[misc]


def _no_capacity_leaked(admin: FederationClient, timeout: float) -> None:
    def leaks() -> list[str]:
        found = []
        for site in admin.list_sites():
            found += [f"{site.name} leases {n} {cls} cards" for cls, n in site.leased if n]
            if site.connected:
                found += [
                    f"{site.name} reports {p.free} of {p.offered} {p.accelerator_class} free"
                    for p in site.pools
                    if p.free < p.offered
                ]
        return found

    eventually(lambda: not leaks(), timeout=timeout, what="every card to be free again", detail=lambda: str(leaks()))


def _describe(events: Iterable[JobEvent]) -> str:
    return ", ".join(f"{e.state.value}#{e.attempt}@{e.site}" for e in events)
