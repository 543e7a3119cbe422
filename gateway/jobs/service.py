"""The vendors' side of the gateway: jobs as the people who submit them see them.

Owns: admission of a new job (members act, viewers and outsiders do not; the policy's verdict with live usage;
a named reservation checked), its creation (idempotent by request id, durable through the group committer
before it is acknowledged, then remembered by the job book), get, list, cancel, watch and explain with the
access rules of `gateway.trust.access`, the usage report and the site list a principal may see. It never
speaks gRPC: the transport calls one method per RPC. It changes a job only through the job book.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
from collections.abc import AsyncIterator, Callable, Collection
from datetime import datetime

from gateway.errors import GatewayError, InvalidArgument, Unavailable
from gateway.identity.principal import Principal, principal_from_uri
from gateway.jobs.admission import AdmissionDecision, admit, refusal
from gateway.jobs.book import JobBook
from gateway.jobs.events import EventBus
from gateway.jobs.model import Job, JobEvent, JobSpec, JobState
from gateway.jobs.reads import job_listing, visible_job, visible_jobs, within_bytes
from gateway.jobs.validate import check_spec
from gateway.jobs.watch import Watched, follow_job
from gateway.placement.place import Explanation
from gateway.policy import FederationPolicy
from gateway.policy.holder import PolicyHolder
from gateway.reservations.book import ReservationBook
from gateway.scheduler.liveusage import LiveUsage
from gateway.scheduler.outlook import Outlook
from gateway.sites.model import SiteView
from gateway.sites.registry import CancelCommand, SiteRegistry
from gateway.store import JobPage, Store
from gateway.store.commit import GroupCommitter
from gateway.store.receipts import ReceiptPage
from gateway.trust import access
from gateway.trust.pages import Page, cut_to_bytes, page_after
from gateway.trust.pages import page_size as page_size_of
from gateway.trust.pagetokens import PageTokens
from gateway.trust.replay import fingerprint, replayed
from gateway.usage.model import UsageRow
from gateway.usage.receipts import SettledReceipt
from gateway.usage.settlement import SignedRecord, list_receipts, receipt_listing

Clock = Callable[[], datetime]
_sequence = itertools.count()


def new_job_id(now: datetime) -> str:
    """Time-sortable id: listing by id is listing by creation time."""
    millis = int(now.timestamp() * 1000)
    return f"job-{millis:011x}{next(_sequence) % 4096:03x}{secrets.token_hex(2)}"


def sequential_job_ids() -> Callable[[datetime], str]:
    """Job ids of the same shape as `new_job_id` that sort by creation time, then by creation order however many
    jobs share a millisecond, with nothing random: for a replay that must give the same answer every time (the
    what-if twin), where the order of jobs created at one instant decides who goes first."""
    counter = itertools.count()

    def job_id(now: datetime) -> str:
        millis = int(now.timestamp() * 1000)
        return f"job-{millis:011x}{next(counter):07x}"

    return job_id


class JobService:
    def __init__(
        self,
        book: JobBook,
        store: Store,
        commits: GroupCommitter[tuple[Job, JobEvent], tuple[Job, bool]],
        bus: EventBus,
        policy: PolicyHolder,
        usage: LiveUsage,
        outlook: Outlook,
        registry: SiteRegistry,
        reservations: ReservationBook,
        clock: Clock,
        tokens: PageTokens,
        signed_record: SignedRecord | None = None,
        job_ids: Callable[[datetime], str] = new_job_id,
    ) -> None:
        self.book = book
        self.store = store  # read only: listings, usage rows
        self.commits = commits
        self.bus = bus
        self.policy = policy
        self.usage = usage
        self.outlook = outlook
        self.registry = registry
        self.reservations = reservations
        self.clock = clock
        self.tokens = tokens  # seals page tokens
        self.signed_record = signed_record  # reads a receipt's signed bytes (the transport's parser)
        self._closing = ""  # why new jobs are refused (the gateway stops); empty while it serves
        self.job_ids = job_ids  # a new job's id, from its creation time

    def refuse_new_jobs(self, why: str) -> None:
        """The gateway stops: from now on CreateJob answers UNAVAILABLE (GATEWAY_SHUTTING_DOWN) with `why`."""
        self._closing = why

    async def settle(self) -> None:
        """Return once every job creation already accepted is durable (the group committer has drained)."""
        await self.commits.settle()

    # ---- vendors --------------------------------------------------------------------------------------------
    def admit(self, caller: Principal, spec: JobSpec, policy: FederationPolicy | None = None) -> AdmissionDecision:
        """Admission under `policy` (default: the one in force, read once for the whole decision)."""
        policy = policy or self.policy.policy
        return admit(spec, caller, policy, self.policy.catalogue, self.clock(), self.usage.usage())

    async def create_job(self, caller: Principal, spec: JobSpec, request_id: str = "") -> Job:
        if self._closing:
            raise Unavailable(self._closing, reason="GATEWAY_SHUTTING_DOWN")
        check_spec(spec)  # the one validation every entry point shares (the job file loader makes it too)
        policy = self.policy.policy  # one policy for the whole decision, even if a reload swaps it meanwhile
        # Members act, viewers, sites and outsiders do not: decided before the store is asked about the request
        # id (a key the caller chose), so that a refused caller learns nothing from it.
        access.require_submitter(caller, policy, spec.tenant, spec.project)
        # A retry gets the original (AIP-155), even once the quota it took is full: a new request is admitted
        # and its insert finds the original under the request id (one store round trip, not two, per call);
        # one that admission refuses is looked up first, and a retry is answered with the original.
        try:
            decision = self.admit(caller, spec, policy)
            if not decision.admitted:
                raise refusal(decision)
            self.reservations.check_job(spec)
        except GatewayError:
            if request_id and (earlier := self.store.job_by_request(spec.tenant, request_id)) is not None:
                return replayed(
                    earlier,
                    earlier.request_fingerprint or fingerprint(earlier.spec),
                    fingerprint(spec),
                    access.can_see_job(caller, earlier, policy),
                    request_id,
                )
            raise
        now = self.clock()
        job = Job(
            job_id=self.job_ids(now),
            spec=spec,
            state=JobState.QUEUED,
            create_time=now,
            update_time=now,
            request_id=request_id,
            owner=caller.uri,
            reasons=decision.reasons,
            request_fingerprint=fingerprint(spec) if request_id else "",
        )
        event = JobEvent(job.job_id, JobState.QUEUED, now, 0, "", decision.reasons[0].message)
        stored, created = await self.commits.submit((job, event))  # request ids are scoped to the spec's tenant
        if created:
            self.book.remember(job)
            return stored
        # The tenant already used this request id: a retry of the same spec gets its job, if the caller may see
        # it (a same-tenant job in a project the caller may not see is never returned); anything else is refused.
        return replayed(
            stored,
            stored.request_fingerprint or fingerprint(stored.spec),
            job.request_fingerprint,
            access.can_see_job(caller, stored, policy),
            request_id,
        )

    def get_job(self, caller: Principal, job_id: str) -> Job:
        job = visible_job(caller, job_id, self.book.find(job_id), self.policy.policy)
        return self.outlook.with_pending_reasons(job)

    def list_jobs(
        self,
        caller: Principal,
        tenant: str = "",
        project: str = "",
        states: Collection[JobState] = (),
        page_size: int = 100,
        page_token: str = "",
        *,
        size_of: Callable[[Job], int] = lambda job: 0,
        budget: int = 0,
    ) -> JobPage:
        """One page of the jobs `caller` may see, with live reasons; with a `budget`, at most that many bytes of
        jobs as `size_of` (the transport's encoded size) counts them."""
        policy = self.policy.policy
        page = visible_jobs(
            self.store, policy, caller, tenant, project, states, page_size, page_token, tokens=self.tokens
        )
        # Why a job waits changes with every capacity report: show the live reasons, not stored ones.
        snapshot = self.outlook.snapshot() if any(j.state == JobState.QUEUED for j in page.jobs) else None
        jobs = tuple(self.outlook.with_pending_reasons(self.book.active.get(j.job_id, j), snapshot) for j in page.jobs)
        if not budget:
            return JobPage(jobs, page.next_page_token)
        listing = job_listing(caller, tenant, project, states)
        return within_bytes(JobPage(jobs, page.next_page_token), listing, self.tokens, size_of, budget)

    def cancel_job(self, caller: Principal, job_id: str, reason: str = "") -> Job:
        job = self.get_job(caller, job_id)
        access.require_job_access(caller, job, self.policy.policy, act=True)
        if job.state.terminal:
            return job
        message = f"cancelled by {caller.uri}" + (f": {reason}" if reason else "")
        cancelled = self.book.transition(job, JobState.CANCELLED, message)  # durable (and fenced) before any site hears
        for placement in job.placements if job.state.holds_capacity else ():
            self.registry.send(placement.site, CancelCommand(job.job_id, job.epoch, message))
        return cancelled

    async def watch_job(
        self, caller: Principal, job_id: str, after_sequence: int | None = None
    ) -> AsyncIterator[Watched]:
        """The job's recorded events from its latest (or after `after_sequence`, a sequence the caller kept from
        an earlier watch) until it ends: `gateway.jobs.watch.follow_job`, for a caller who may read the job."""
        self.get_job(caller, job_id)  # access check before subscribing
        async for watched in follow_job(
            self.store, self.bus, job_id, lambda: self.get_job(caller, job_id), caller.share, after_sequence
        ):
            yield watched

    def explain(self, caller: Principal, job_id: str = "", spec: JobSpec | None = None) -> Explanation:
        """Why a job is where it is, or where a spec would go now. An existing job is judged as its submitter
        would be (a fellow member of a joint project may ask about a job another tenant submitted)."""
        job = self.get_job(caller, job_id) if job_id else None
        submitter = caller
        if job is not None:
            spec = job.spec
            with contextlib.suppress(GatewayError):
                submitter = principal_from_uri(job.owner, caller.federation) if job.owner else caller
        if spec is None:
            raise InvalidArgument("explain needs a job id or a job spec")
        if job is None:
            check_spec(spec)  # a dry run is judged like a submission
        policy = self.policy.policy
        decision = self.admit(submitter, spec, policy)
        if not decision.admitted:
            return Explanation(False, decision.reasons, (), decision.policy_version)
        if job is not None and job.state != JobState.QUEUED:
            return Explanation(True, job.reasons, (), decision.policy_version)
        site_said = tuple(r for r in job.reasons if r.stage == "site") if job is not None else ()
        where, candidates = self.outlook.explain_placement(spec, decision.classes, job, policy)
        return Explanation(True, decision.reasons + site_said + where, candidates, decision.policy_version)

    def usage_report(
        self,
        caller: Principal,
        start: datetime,
        end: datetime | None = None,
        project: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[UsageRow]:
        """One page of the usage the caller may see (its tenant's projects and the joint projects it is in;
        admins: all), by tenant, project and class. The token is bound to the window as asked."""
        access.require_role(caller, "user", "admin")
        size = page_size_of(page_size)
        listing = "\n".join(("usage", caller.uri, start.isoformat(), end.isoformat() if end else "", project))
        policy, catalogue = self.policy.policy, self.policy.catalogue
        rows = []
        for tenant, proj, cls, hours, attempts in self.store.usage_between(start, end or self.clock()):
            if project and proj != project:
                continue
            if access.role_in(caller, policy, tenant, proj) is None:
                continue
            rows.append(UsageRow(tenant, proj, cls, hours, catalogue.normalised_compute(cls, hours), attempts))
        return page_after(rows, _usage_key, listing, size, page_token, tokens=self.tokens)

    def usage_receipts(
        self,
        caller: Principal,
        start: datetime,
        end: datetime | None,
        project: str = "",
        page_size: int = 0,
        page_token: str = "",
        *,
        size_of: Callable[[SettledReceipt], int] = lambda receipt: 0,
        budget: int = 0,
    ) -> ReceiptPage:
        """Settled usage receipts the caller may see, from `start` to `end` (default: now), one page; with a
        `budget`, at most that many bytes of them as `size_of` counts them."""
        page = list_receipts(
            self.store,
            self.policy.policy,
            caller,
            start,
            end,
            project,
            page_size,
            page_token,
            now=self.clock(),
            tokens=self.tokens,
            signed=self.signed_record,
        )
        if not budget:
            return page
        listing = receipt_listing(caller, start, end, project)
        cut = cut_to_bytes(
            Page(page.receipts, page.next_page_token), page.positions, size_of, budget, listing, tokens=self.tokens
        )
        return ReceiptPage(cut.items, cut.next_page_token, page.positions[: len(cut.items)])

    def list_sites(
        self,
        caller: Principal,
        page_size: int = 0,
        page_token: str = "",
        *,
        size_of: Callable[[SiteView], int] = lambda site: 0,
        budget: int = 0,
    ) -> Page[SiteView]:
        """One page of the member sites, by name: users and admins. With a `budget`, at most that many bytes."""
        access.require_role(caller, "user", "admin")
        size = page_size_of(page_size)
        listing = "\n".join(("sites", caller.uri))
        views = self.registry.views(self.usage.leases())
        page = page_after(views, lambda site: site.name, listing, size, page_token, tokens=self.tokens)
        if not budget:
            return page
        return cut_to_bytes(page, [s.name for s in page.items], size_of, budget, listing, tokens=self.tokens)


def _usage_key(row: UsageRow) -> str:
    """A usage row's place in its listing: tenant, project, class (names hold no control characters)."""
    return "\x1f".join((row.tenant, row.project, row.accelerator_class))
