"""One contract, two engines: every MUST of `gateway.store.base.Store`, run against SQLite and a real
PostgreSQL (the `services` half: it skips without PostgreSQL, and fails then under FEDGATE_REQUIRE_SERVICES=1).

Each test gets a fresh, empty store from `engine.open()`; `engine.open()` again opens the SAME database anew
(what a restarted gateway does), so durability is checked across a real close and reopen.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest

from gateway.errors import AlreadyExists
from gateway.identity.join import JoinTokenRecord
from gateway.identity.revocation import Revocation
from gateway.jobs.model import Job, JobEvent, JobSpec, JobState, Placement, Resources, StackRun
from gateway.reservations.model import Reservation, ReservationRequest, ReservationState
from gateway.store import Store, open_store
from gateway.store.commit import job_creations
from gateway.trust.audit import AuditEntry
from gateway.usage.receipts import SettledReceipt, SiteReceipt, UsageRecord

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Engine:
    """Opens stores on one database of one engine; closes every store it opened at the end."""

    name: str
    url: str
    opened: list[Store] = field(default_factory=list)

    def open(self) -> Store:
        store = open_store(self.url)
        self.opened.append(store)
        return store

    def reopen(self, store: Store) -> Store:
        """Close `store` and open the same database again, as a restarted gateway does."""
        store.close()
        self.opened.remove(store)
        return self.open()

    def other_writer(self, store: Store) -> Store:
        """What a second writer racing `store` is on this engine: on PostgreSQL another store on the same
        database (a second gateway); on SQLite, where a second writing process is refused by design
        (`tests/unit/test_sqlite_store_safety.py`), the same store from other threads."""
        return store if self.name == "sqlite" else self.open()

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = Engine("sqlite", f"sqlite:///{tmp_path / 'gateway.db'}")
    else:
        engine = Engine("postgresql", request.getfixturevalue("pg_url"))
    yield engine
    engine.close_all()


@pytest.fixture
def store(engine: Engine) -> Store:
    return engine.open()


# ---- builders -------------------------------------------------------------------------------------------------
def spec(tenant: str = "deepsea-ai", project: str = "llama-sft", cards: int = 2) -> JobSpec:
    return JobSpec(tenant, project, Resources("nvidia-h100", None, cards), (StackRun("cuda", "img", ("true",)),))


def job(n: int, tenant: str = "deepsea-ai", project: str = "llama-sft", request_id: str = "") -> Job:
    return Job(f"job-{n:04d}", spec(tenant, project), JobState.QUEUED, T0, T0, request_id=request_id, owner="u")


def queued(j: Job) -> JobEvent:
    return JobEvent(j.job_id, JobState.QUEUED, j.create_time, message="admitted")


def ran(j: Job, state: JobState, start: datetime, hours: float, site: str = "a") -> Job:
    """`j` after an attempt at `site` that ran `hours` and ended in `state`."""
    placement = Placement(site, "nvidia-h100", j.spec.resources.cards, (0, 1))
    end = start + timedelta(hours=hours)
    return j.evolve(state=state, attempt=1, epoch=1, placements=(placement,), start_time=start, end_time=end)


def event(j: Job, message: str = "") -> JobEvent:
    return JobEvent(j.job_id, j.state, j.update_time, j.attempt, j.sites[0] if j.sites else "", message)


def unwritable(j: Job) -> JobEvent:
    """An event no engine can write (its time is no datetime): the batch fails after its first statements."""
    return JobEvent(j.job_id, j.state, cast(datetime, None))


def receipt(j: Job, site: str = "a", epoch: int = 1, end: datetime = T0) -> SettledReceipt:
    record = UsageRecord(
        site,
        j.job_id,
        epoch,
        1,
        j.spec.tenant,
        j.spec.project,
        "nvidia-h100",
        2,
        end - timedelta(hours=1),
        end,
        0,
        JobState.SUCCEEDED,
    )
    return SettledReceipt(
        SiteReceipt(f"record {j.job_id} {epoch}".encode(), b"site-sig\x00\xff", record),
        b"site-cert",
        b"gateway-sig",
        b"gateway-cert",
        end + timedelta(seconds=5),
    )


def reservation(n: int, tenant: str = "deepsea-ai", project: str = "llama-sft", request_id: str = "") -> Reservation:
    request = ReservationRequest(
        tenant, project, Resources("nvidia-h100", None, 4), T0 + timedelta(days=1), T0 + timedelta(days=2)
    )
    return Reservation(f"book:{n:04d}", request, ReservationState.PENDING, T0, T0, request_id=request_id)


def audit(sequence: int) -> AuditEntry:
    return AuditEntry(
        sequence,
        T0 + timedelta(seconds=sequence),
        "policy.reloaded",
        "admin",
        {"v": str(sequence)},
        f"prev{sequence}",
        f"hash{sequence}",
        f"sig{sequence}",
    )


def ids(jobs: tuple[Job, ...] | list[Job]) -> list[str]:
    return [j.job_id for j in jobs]


# ---- jobs: idempotency and group commit -----------------------------------------------------------------------
def test_create_job_is_idempotent_on_tenant_and_request_id(store: Store) -> None:
    first, created = store.create_job(job(1, request_id="r1"), queued(job(1)))
    assert created and first.job_id == "job-0001"
    again, created = store.create_job(job(2, request_id="r1"), queued(job(2)))
    assert not created and again == first  # the stored job, not the one offered
    assert store.get_job("job-0002") is None and store.events("job-0002") == ()
    assert [e.state for e in store.events("job-0001")] == [JobState.QUEUED]
    other, created = store.create_job(job(3, tenant="aurora-lab", request_id="r1"), queued(job(3)))
    assert created and other.job_id == "job-0003"  # the key is per tenant
    without, created = store.create_job(job(4), queued(job(4)))
    assert created and store.get_job("job-0004") == without
    assert ids(store.list_jobs(None).jobs) == ["job-0001", "job-0003", "job-0004"]
    assert store.job_by_request("deepsea-ai", "r1") == first  # found by the tenant's own key
    assert store.job_by_request("aurora-lab", "r1") == other
    assert store.job_by_request("deepsea-ai", "r9") is None and store.job_by_request("panda-lm", "r1") is None


def test_the_request_fingerprint_is_kept_with_the_job_and_the_reservation_across_a_restart(
    engine: Engine, store: Store
) -> None:
    # A retry after a restart must still be told apart from a different request under the same request id.
    made, _ = store.create_job(replace(job(1, request_id="r1"), request_fingerprint="f" * 64), queued(job(1)))
    store.create_reservation(replace(reservation(1, request_id="r1"), request_fingerprint="e" * 64))
    store = engine.reopen(store)
    stored_job = store.get_job(made.job_id)
    assert stored_job is not None and stored_job.request_fingerprint == "f" * 64
    stored_booking = store.reservation_by_request("deepsea-ai", "r1")
    assert stored_booking is not None and stored_booking.request_fingerprint == "e" * 64


def test_create_jobs_answers_in_order_and_a_repeat_inside_a_batch_gets_the_first(store: Store) -> None:
    store.create_job(job(1, request_id="old"), queued(job(1)))
    batch = [job(2, request_id="new"), job(3, request_id="old"), job(4), job(5, request_id="new")]
    results = store.create_jobs([(j, queued(j)) for j in batch])
    assert [(j.job_id, created) for j, created in results] == [
        ("job-0002", True),
        ("job-0001", False),
        ("job-0004", True),
        ("job-0002", False),
    ]
    assert ids(store.list_jobs(None).jobs) == ["job-0001", "job-0002", "job-0004"]
    assert store.create_jobs([]) == []


def test_create_jobs_is_all_or_nothing(engine: Engine, store: Store) -> None:
    store.create_job(job(1), queued(job(1)))
    batch = [job(2, request_id="r2"), job(3), job(1)]  # job-0001 exists: the batch's last insert fails
    with pytest.raises(Exception):  # noqa: B017 (each engine raises its own integrity error)
        store.create_jobs([(j, queued(j)) for j in batch])
    assert ids(store.list_jobs(None).jobs) == ["job-0001"]
    assert store.events("job-0002") == () and store.events("job-0003") == ()
    store = engine.reopen(store)  # nothing half-written surfaces after a restart either
    assert ids(store.list_jobs(None).jobs) == ["job-0001"]
    assert store.create_job(job(2, request_id="r2"), queued(job(2)))[1]  # the failed batch reserved no key


async def test_group_commit_from_a_thread_keeps_every_job_once(engine: Engine, store: Store) -> None:
    """The group committer calls `create_jobs` from a worker thread while the loop keeps submitting."""
    committer = job_creations(store)
    jobs = [job(n, request_id=f"r{n % 40}") for n in range(100)]  # 60 repeats of 40 keys
    results = await asyncio.gather(*(committer.submit((j, queued(j))) for j in jobs))
    assert sum(created for _, created in results) == 40
    for j, (stored, _) in zip(jobs, results, strict=True):
        assert stored.request_id == j.request_id
    store = engine.reopen(store)
    assert len(store.list_jobs(None, page_size=1000).jobs) == 40


# ---- jobs: transitions, durability, ordering, paging, visibility -----------------------------------------------
def test_transitions_events_and_cursors_survive_a_reopen(engine: Engine, store: Store) -> None:
    j = job(1, request_id="r1")
    store.create_job(j, queued(j))
    dispatched = j.evolve(state=JobState.DISPATCHED, attempt=1, epoch=1, placements=(Placement("a", "nvidia-h100", 2),))
    running = dispatched.evolve(state=JobState.RUNNING, update_time=T0 + timedelta(minutes=1))
    first = store.save_transition(dispatched, event(dispatched, "sent"))
    later = store.save_transitions([(running, event(running, "started"), ("a", 7))])
    assert first.sequence > 0 and later[0].sequence > first.sequence
    store = engine.reopen(store)
    assert store.get_job(j.job_id) == running
    assert [(e.state, e.message, e.site) for e in store.events(j.job_id)] == [
        (JobState.QUEUED, "admitted", ""),
        (JobState.DISPATCHED, "sent", "a"),
        (JobState.RUNNING, "started", "a"),
    ]
    assert [e.sequence for e in store.events(j.job_id)] == sorted(e.sequence for e in store.events(j.job_id))
    assert store.site_cursor("a") == 7 and store.site_cursor("never-heard") == 0
    assert store.create_job(job(9, request_id="r1"), queued(job(9))) == (running, False)  # the key outlives it too


def test_a_batch_of_transitions_answers_each_event_with_its_stored_sequence(store: Store) -> None:
    jobs = [job(n) for n in range(1, 6)]
    store.create_jobs([(j, queued(j)) for j in jobs])
    store.save_transition(jobs[0].evolve(state=JobState.CANCELLED), event(jobs[0].evolve(state=JobState.CANCELLED)))
    moved = [j.evolve(state=JobState.DISPATCHED, attempt=1, epoch=1) for j in jobs[1:]]
    stored = store.save_transitions([(j, event(j, f"sent {j.job_id}"), None) for j in moved])
    assert [e.message for e in stored] == [f"sent {j.job_id}" for j in moved]
    for answered in stored:
        assert answered in store.events(answered.job_id)
    assert [e.sequence for e in stored] == sorted({e.sequence for e in stored})


def test_a_site_cursor_never_goes_back(store: Store) -> None:
    j = job(1)
    store.create_job(j, queued(j))
    running = j.evolve(state=JobState.RUNNING)
    store.save_transitions([(running, event(running), ("a", 10)), (running, event(running), ("a", 4))])
    store.save_transition(running, event(running), ("a", 3))
    assert store.site_cursor("a") == 10
    store.save_transition(running, event(running), ("a", 11))
    assert store.site_cursor("a") == 11


def test_a_site_cursor_advanced_without_a_transition_never_goes_back_and_survives_a_reopen(
    engine: Engine, store: Store
) -> None:
    store.advance_site_cursor("a", 5)
    store.advance_site_cursor("a", 3)
    assert store.site_cursor("a") == 5 and store.site_cursor("b") == 0
    j = job(1)
    store.create_job(j, queued(j))
    store.save_transition(j, event(j), ("a", 4))
    assert store.site_cursor("a") == 5
    store.advance_site_cursor("a", 2**63 - 1)  # the largest sequence the protocol admits
    assert engine.reopen(store).site_cursor("a") == 2**63 - 1


def test_message_sequences_to_a_site_only_increase_across_reopens(engine: Engine, store: Store) -> None:
    first = store.reserve_site_messages("a", 100)
    assert first == 1
    assert store.reserve_site_messages("b", 1) == 1  # each site has its own sequence
    second = store.reserve_site_messages("a", 10)
    assert second == 101
    reopened = engine.reopen(store)
    assert reopened.reserve_site_messages("a", 1) == 111


def test_racing_writers_reserve_disjoint_blocks_of_message_sequences(engine: Engine, store: Store) -> None:
    other = engine.other_writer(store)
    firsts: list[int] = []

    def reserve(on: Store) -> None:
        for _ in range(20):
            firsts.append(on.reserve_site_messages("a", 5))

    threads = [threading.Thread(target=reserve, args=(on,)) for on in (store, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(firsts) == list(range(1, 200, 5))


def test_save_transitions_is_all_or_nothing(store: Store) -> None:
    a, b = job(1), job(2)
    store.create_jobs([(a, queued(a)), (b, queued(b))])
    good = a.evolve(state=JobState.CANCELLED)
    broken = unwritable(b.evolve(state=JobState.CANCELLED))
    with pytest.raises(Exception):  # noqa: B017
        store.save_transitions([(good, event(good), ("a", 5)), (b.evolve(state=JobState.CANCELLED), broken, None)])
    assert store.get_job(a.job_id) == a and [e.state for e in store.events(a.job_id)] == [JobState.QUEUED]
    assert store.site_cursor("a") == 0


def test_jobs_list_in_creation_order_page_by_page_and_filter_by_state(store: Store) -> None:
    made = [job(n) for n in (5, 1, 3, 2, 4, 10, 7)]  # created out of id order: the list is in id (creation) order
    for j in made:
        store.create_job(j, queued(j))
    cancelled = made[2].evolve(state=JobState.CANCELLED)
    store.save_transition(cancelled, event(cancelled))
    pages, token = [], ""
    while True:
        page = store.list_jobs(None, page_size=3, page_token=token)
        pages.append(ids(page.jobs))
        if not (token := page.next_page_token):
            break
    assert pages == [["job-0001", "job-0002", "job-0003"], ["job-0004", "job-0005", "job-0007"], ["job-0010"]]
    assert ids(store.list_jobs(None, states=[JobState.CANCELLED]).jobs) == ["job-0003"]
    queued_ids = ids(store.list_jobs(None, states=[JobState.QUEUED, JobState.RUNNING]).jobs)
    assert queued_ids == ["job-0001", "job-0002", "job-0004", "job-0005", "job-0007", "job-0010"]
    assert ids(store.active_jobs()) == queued_ids
    exact = store.list_jobs(None, page_size=7)
    assert len(exact.jobs) == 7 and exact.next_page_token == ""


def test_listings_show_only_what_the_scope_allows(store: Store) -> None:
    rows = [
        job(1, "deepsea-ai", "llama-sft"),
        job(2, "deepsea-ai", "vision"),
        job(3, "aurora-lab", "joint-climate"),
        job(4, "aurora-lab", "private"),
        job(5, "zenith", "joint-climate"),
    ]
    for j in rows:
        store.create_job(j, queued(j))
    assert ids(store.list_jobs(None).jobs) == [j.job_id for j in rows]
    assert ids(store.list_jobs(["deepsea-ai"]).jobs) == ["job-0001", "job-0002"]
    assert ids(store.list_jobs(["deepsea-ai"], project="vision").jobs) == ["job-0002"]
    assert ids(store.list_jobs(["deepsea-ai"], or_projects=["joint-climate"]).jobs) == [
        "job-0001",
        "job-0002",
        "job-0003",
        "job-0005",
    ]
    joint = store.list_jobs(["deepsea-ai"], project="joint-climate", or_projects=["joint-climate"])
    assert ids(joint.jobs) == ["job-0003", "job-0005"]
    assert store.list_jobs([]).jobs == ()  # a caller who sees no tenant sees nothing
    assert ids(store.list_jobs([], or_projects=["joint-climate"]).jobs) == ["job-0003", "job-0005"]
    assert ids(store.list_jobs(None, project="private").jobs) == ["job-0004"]


def test_usage_counts_each_ended_attempt_once(engine: Engine, store: Store) -> None:
    a, b = job(1, project="llama-sft"), job(2, tenant="aurora-lab", project="climate")
    store.create_jobs([(a, queued(a)), (b, queued(b))])
    done = ran(a, JobState.SUCCEEDED, T0, 2.0)
    preempted = ran(b, JobState.PREEMPTED, T0 + timedelta(hours=1), 1.5)
    store.save_transitions([(done, event(done), None), (preempted, event(preempted), None)])
    store.save_transition(done, event(done))  # a repeated terminal transition records nothing new
    running = a.evolve(state=JobState.RUNNING, start_time=T0)
    store.save_transition(running, event(running))  # no end, no usage
    store = engine.reopen(store)
    usage = store.usage_between(T0, T0 + timedelta(days=1))
    assert usage == [
        ("aurora-lab", "climate", "nvidia-h100", 3.0, 1),
        ("deepsea-ai", "llama-sft", "nvidia-h100", 4.0, 1),
    ]
    assert store.usage_between(T0, T0 + timedelta(hours=2)) == []  # [start, end): the ends are at 2 h and 2.5 h
    assert store.card_hours_since(T0 + timedelta(hours=2, minutes=10)) == {("aurora-lab", "climate"): 3.0}


def test_a_gang_with_parts_of_one_class_at_several_sites_counts_every_part(engine: Engine, store: Store) -> None:
    """The usage table keeps one row per job, attempt and class: parts of one class at two sites add up in it
    (it once kept the first part's row and dropped the rest, so a tenant's quota saw half of such a gang)."""
    gang = job(1, project="llama-sft")
    store.create_jobs([(gang, queued(gang))])
    parts = (
        Placement("a", "nvidia-h100", 8, ()),
        Placement("b", "nvidia-h100", 4, ()),
        Placement("c", "ascend-910b", 2, ()),
    )
    done = gang.evolve(
        state=JobState.SUCCEEDED,
        attempt=1,
        epoch=1,
        placements=parts,
        start_time=T0,
        end_time=T0 + timedelta(hours=2),
    )
    store.save_transition(done, event(done))
    store = engine.reopen(store)
    assert store.usage_between(T0, T0 + timedelta(days=1)) == [
        ("deepsea-ai", "llama-sft", "ascend-910b", 4.0, 1),
        ("deepsea-ai", "llama-sft", "nvidia-h100", 24.0, 1),
    ]
    assert store.card_hours_since(T0) == {("deepsea-ai", "llama-sft"): 28.0}


# ---- receipts --------------------------------------------------------------------------------------------------
def test_receipts_are_kept_once_per_job_epoch_and_site_and_listed_in_settlement_order(
    engine: Engine, store: Store
) -> None:
    a, b, c = job(1), job(2, tenant="aurora-lab", project="joint"), job(3, tenant="zenith")
    store.create_jobs([(j, queued(j)) for j in (a, b, c)])
    store.save_transitions([], [receipt(b, end=T0 + timedelta(hours=1)), receipt(a)])  # an empty batch is allowed
    store.save_transitions([], [receipt(a), receipt(a, epoch=2), receipt(a, site="b"), receipt(c)])
    store = engine.reopen(store)
    everything = store.list_receipts(None, T0 - timedelta(days=1), T0 + timedelta(days=1))
    keys = [(r.record.job_id, r.record.epoch, r.record.site) for r in everything.receipts if r.record]
    assert keys == [
        ("job-0002", 1, "a"),
        ("job-0001", 1, "a"),
        ("job-0001", 2, "a"),
        ("job-0001", 1, "b"),
        ("job-0003", 1, "a"),
    ]
    assert everything.receipts[1] == receipt(a)  # bytes, certificates and times come back as settled
    first = store.list_receipts(None, T0 - timedelta(days=1), T0 + timedelta(days=1), page_size=2)
    rest = store.list_receipts(None, T0 - timedelta(days=1), T0 + timedelta(days=1), page_token=first.next_page_token)
    assert len(first.receipts) == 2 and first.receipts + rest.receipts == everything.receipts
    window = store.list_receipts(None, T0 + timedelta(minutes=30), T0 + timedelta(hours=2))
    assert [r.record.job_id for r in window.receipts if r.record] == ["job-0002"]
    mine = store.list_receipts(["deepsea-ai"], T0 - timedelta(days=1), T0 + timedelta(days=1), or_projects=["joint"])
    assert {r.record.job_id for r in mine.receipts if r.record} == {"job-0001", "job-0002"}
    scoped = store.list_receipts(["deepsea-ai"], T0 - timedelta(days=1), T0 + timedelta(days=1), project="joint")
    assert scoped.receipts == ()


def test_receipts_commit_with_the_transitions_they_settle(store: Store) -> None:
    a = job(1)
    store.create_job(a, queued(a))
    done = ran(a, JobState.SUCCEEDED, T0 - timedelta(hours=1), 1.0)
    broken = unwritable(done)
    with pytest.raises(Exception):  # noqa: B017
        store.save_transitions([(done, broken, None)], [receipt(a)])
    assert store.list_receipts(None, T0 - timedelta(days=1), T0 + timedelta(days=1)).receipts == ()
    store.save_transitions([(done, event(done), None)], [receipt(a)])
    assert len(store.list_receipts(None, T0 - timedelta(days=1), T0 + timedelta(days=1)).receipts) == 1


# ---- reservations ----------------------------------------------------------------------------------------------
def test_reservations_are_idempotent_durable_listed_and_scoped(engine: Engine, store: Store) -> None:
    first, created = store.create_reservation(reservation(1, request_id="r1"))
    assert created
    again, created = store.create_reservation(reservation(2, request_id="r1"))
    assert (again, created) == (first, False) and store.get_reservation("book:0002") is None
    store.create_reservation(reservation(3, tenant="aurora-lab", project="joint", request_id="r1"))
    store.create_reservation(reservation(4))
    confirmed = reservation(4).evolve(state=ReservationState.CONFIRMED, update_time=T0 + timedelta(minutes=5))
    store.save_reservation(confirmed)
    ended = reservation(1, request_id="r1").evolve(state=ReservationState.ENDED)
    store.save_reservation(ended)
    store = engine.reopen(store)
    assert store.get_reservation("book:0004") == confirmed
    assert store.reservation_by_request("deepsea-ai", "r1") == ended
    assert store.reservation_by_request("zenith", "r1") is None
    assert [r.reservation_id for r in store.live_reservations()] == ["book:0003", "book:0004"]
    page = store.list_reservations(None, page_size=2)
    rest = store.list_reservations(None, page_token=page.next_page_token)
    assert [r.reservation_id for r in page.reservations + rest.reservations] == ["book:0001", "book:0003", "book:0004"]
    assert [r.reservation_id for r in store.list_reservations(["deepsea-ai"]).reservations] == [
        "book:0001",
        "book:0004",
    ]
    joint = store.list_reservations(["deepsea-ai"], or_projects=["joint"])
    assert [r.reservation_id for r in joint.reservations] == ["book:0001", "book:0003", "book:0004"]


# ---- the trust layer -------------------------------------------------------------------------------------------
def race(times: int, action: Callable[[int], bool]) -> list[bool]:
    """Run `action(i)` from `times` threads released together; their answers."""
    barrier, answers, lock = threading.Barrier(times), list[bool](), threading.Lock()

    def run(index: int) -> None:
        barrier.wait()
        answer = action(index)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answers


def test_a_join_token_is_consumed_by_exactly_one_of_racing_callers(engine: Engine, store: Store) -> None:
    record = JoinTokenRecord("tok1", "centre-a", "ab" * 32, "admin", T0, T0 + timedelta(hours=1))
    store.add_join_token(record)
    assert store.join_token("tok1") == record and store.join_token("nope") is None
    other = engine.other_writer(store)
    stores = [store, other]
    answers = race(8, lambda i: stores[i % 2].consume_join_token("tok1", T0 + timedelta(minutes=1)))
    assert sorted(answers) == [False] * 7 + [True]
    store = engine.reopen(store)
    assert store.join_token("tok1") == JoinTokenRecord(
        "tok1", "centre-a", "ab" * 32, "admin", T0, T0 + timedelta(hours=1), T0 + timedelta(minutes=1)
    )
    assert not store.consume_join_token("tok1", T0 + timedelta(minutes=2))


def test_a_single_use_token_is_used_once_ever(engine: Engine, store: Store) -> None:
    other = engine.other_writer(store)
    stores = [store, other]
    answers = race(8, lambda i: stores[i % 2].record_token_use("jti-1", T0))
    assert sorted(answers) == [False] * 7 + [True]
    store = engine.reopen(store)
    assert not store.record_token_use("jti-1", T0 + timedelta(days=1))
    assert store.record_token_use("jti-2", T0)


def test_revocations_are_kept_in_the_order_they_were_made(engine: Engine, store: Store) -> None:
    made = [
        Revocation("serial", "0abc", T0, "key lost", "admin"),
        Revocation("principal", "fedgate://x/site/a", T0 + timedelta(minutes=1), "", "admin"),
        Revocation("token", "jti-9", T0 - timedelta(days=1), "leaked", "root"),
    ]
    for revocation in made:
        store.add_revocation(revocation)
    store = engine.reopen(store)
    assert store.revocations() == tuple(made)


def test_the_audit_log_is_append_only_and_read_in_order(engine: Engine, store: Store) -> None:
    assert store.last_audit() is None and store.audit_entries() == ()
    for sequence in range(1, 6):
        store.append_audit(audit(sequence))
    with pytest.raises(AlreadyExists):
        store.append_audit(audit(3))
    store = engine.reopen(store)
    assert store.audit_entries() == tuple(audit(n) for n in range(1, 6))
    assert store.audit_entries(after=2, limit=2) == (audit(3), audit(4))
    assert store.last_audit() == audit(5)
