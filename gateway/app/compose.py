"""The composition root of the gateway's core: every part built once, from the store, the policy and the clock.

Owns: which part is given which collaborators, and the order they are wired in: the job book (the one writer of
job state) with its listeners (the scheduler's queue, live usage) and the event bus for watchers; the launcher;
the reservation book; the gang coordinator behind its narrow interfaces; the outlook; the scheduler; the
vendors' and admins' services; the site dispatcher. It returns them as one `Core`, which the transport wires to
its servicers and the tests, the benchmarks and the simulator drive. No part is built anywhere else, and no
part is handed another part's fields: each gets what it uses in its constructor.
It starts no task: the scheduler loop is started (and supervised) by whoever runs the gateway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.app.admin import AdminService
from gateway.gangs.coordinator import GangCoordinator
from gateway.jobs.book import JobBook
from gateway.jobs.events import EventBus
from gateway.jobs.model import JobSpec
from gateway.jobs.service import JobService, new_job_id
from gateway.policy.engine import evaluate
from gateway.policy.holder import PolicyHolder
from gateway.reservations.book import ReservationBook
from gateway.reservations.ledger import ReservationLedger
from gateway.reservations.rounds import ReservationRounds
from gateway.scheduler.cycle import Scheduler
from gateway.scheduler.earmarks import EarmarkBook
from gateway.scheduler.launcher import Launcher
from gateway.scheduler.liveusage import LiveUsage
from gateway.scheduler.outlook import Outlook
from gateway.scheduler.queue import JobQueue
from gateway.sites.dispatcher import Dispatcher
from gateway.sites.logs import LogRelay
from gateway.sites.registry import SiteRegistry
from gateway.store import Store
from gateway.store.commit import job_creations
from gateway.trust.pagetokens import PageTokens
from gateway.usage.receipts import Countersigner
from gateway.usage.settlement import SignedRecord


def utc_now() -> datetime:
    """The gateway's clock (tests, the simulator and the benchmarks pass their own)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Core:
    """The gateway's parts, as the composition root wired them."""

    store: Store
    policy: PolicyHolder
    clock: Callable[[], datetime]
    registry: SiteRegistry
    logs: LogRelay
    book: JobBook
    queue: JobQueue
    usage: LiveUsage
    launcher: Launcher
    reservations: ReservationBook
    reservation_ledger: ReservationLedger
    reservation_rounds: ReservationRounds
    earmarks: EarmarkBook
    gangs: GangCoordinator
    outlook: Outlook
    scheduler: Scheduler
    jobs: JobService
    admin: AdminService
    dispatcher: Dispatcher


def admitted_classes(policy: PolicyHolder, clock: Callable[[], datetime]) -> Callable[[JobSpec], tuple[str, ...]]:
    """The classes the policy in force (at the time of asking) lets a job use."""

    def classes_for(spec: JobSpec) -> tuple[str, ...]:
        return evaluate(policy.policy, policy.catalogue, spec, clock()).classes

    return classes_for


def compose(
    store: Store,
    policy: PolicyHolder,
    clock: Callable[[], datetime] = utc_now,
    countersigner: Countersigner | None = None,
    page_tokens: PageTokens | None = None,
    signed_record: SignedRecord | None = None,
    job_ids: Callable[[datetime], str] | None = None,
) -> Core:
    """Build the core over `store`: its active jobs are loaded, and gangs a restart interrupted queued again
    (their holds at the sites expire by themselves). `countersigner` settles usage receipts (None: checked only);
    `page_tokens` seals list page tokens (None: a key of this process only). `signed_record` reads the record a
    receipt's site signed (the transport's parser), against which listed receipts are judged (None: columns).
    `job_ids` names new jobs from their creation time (None: `new_job_id`; the twin passes ids with no chance
    in them, `sequential_job_ids`)."""
    page_tokens = page_tokens or PageTokens.ephemeral()
    registry = SiteRegistry(store.reserve_site_messages)  # sequences that only increase, across restarts
    logs = LogRelay(registry)  # job output from the sites to readers (access checked by the job service)
    bus = EventBus()
    book = JobBook(store, clock, bus)
    queue = JobQueue(admitted_classes(policy, clock))
    usage = LiveUsage(
        store,
        policy,
        registry,
        clock,
        on_freed=queue.capacity_changed,
        read_ended=lambda since: book.read_after_writes(lambda: store.card_hours_since(since)),
    )
    book.listen(queue.job_changed)
    book.listen(usage.job_changed)
    reservation_ledger = ReservationLedger(store, policy, clock)
    reservation_rounds = ReservationRounds(reservation_ledger, registry, policy, clock, queue.capacity_changed)
    reservations = ReservationBook(reservation_ledger, reservation_rounds, store, policy, registry, clock, page_tokens)
    earmarks = EarmarkBook()  # backfill and preemption earmarks between cycles
    launcher = Launcher(book, registry, policy)
    book.load()
    gangs = GangCoordinator(book, launcher, registry, clock)
    gangs.requeue_interrupted()
    outlook = Outlook(queue, usage, registry, policy, reservation_ledger, gangs, earmarks)
    scheduler = Scheduler(
        book,
        queue,
        usage,
        launcher,
        outlook,
        registry,
        policy,
        reservation_ledger,
        reservation_rounds,
        gangs,
        earmarks,
        clock,
    )
    jobs = JobService(
        book,
        store,
        job_creations(store),
        bus,
        policy,
        usage,
        outlook,
        registry,
        reservations,
        clock,
        page_tokens,
        signed_record,
        job_ids or new_job_id,
    )
    admin = AdminService(policy, book.active, queue, usage, registry, clock)
    dispatcher = Dispatcher(
        book,
        store,
        registry,
        launcher,
        gangs,
        reservation_rounds,
        logs,
        policy,
        clock,
        queue.capacity_changed,
        countersigner,
    )
    return Core(
        store,
        policy,
        clock,
        registry,
        logs,
        book,
        queue,
        usage,
        launcher,
        reservations,
        reservation_ledger,
        reservation_rounds,
        earmarks,
        gangs,
        outlook,
        scheduler,
        jobs,
        admin,
        dispatcher,
    )
