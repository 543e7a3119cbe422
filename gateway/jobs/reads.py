"""Reading jobs as a caller may see them, from the store: the rules the leader's job service and a standby
gateway share.

Owns: `visible_job` (not found, or found and the caller may see it), `visible_jobs` (one page of the jobs a
caller may list: its tenants, its joint projects, the states asked for, the page size clamped to the maximum,
the page token sealed for that caller and those filters) and `within_bytes` (a page cut to a byte budget, so
that no job, however large, makes a listing fail for everyone: the page ends early with a next page token, and a
job too large to list on its own is listed without its command, env and labels, to be read with GetJob).
Neither adds live pending reasons: only the leader knows them (`gateway.jobs.service`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import replace

from gateway.errors import NotFound
from gateway.identity.principal import Principal
from gateway.jobs.model import Job, JobState, Reason
from gateway.policy import FederationPolicy
from gateway.store import JobPage, Store
from gateway.trust import access
from gateway.trust.pages import page_size as page_size_of
from gateway.trust.pagetokens import PageTokens


def visible_job(caller: Principal, job_id: str, job: Job | None, policy: FederationPolicy) -> Job:
    """`job` (found under `job_id`) if `caller` may see it; NotFound when there is none."""
    if job is None:
        raise NotFound(f"job {job_id} not found", reason="JOB_NOT_FOUND")
    access.require_job_access(caller, job, policy)
    return job


def visible_jobs(
    store: Store,
    policy: FederationPolicy,
    caller: Principal,
    tenant: str = "",
    project: str = "",
    states: Collection[JobState] = (),
    page_size: int = 0,
    page_token: str = "",
    *,
    tokens: PageTokens,
) -> JobPage:
    """One page of the stored jobs `caller` may see, in job id order. Page tokens are sealed by `tokens` for
    this caller and these filters: the store's own token (a job id the caller may not see) never leaves."""
    size = page_size_of(page_size)
    tenants = access.visible_tenants(caller, tenant)
    listing = job_listing(caller, tenant, project, states)
    after = tokens.open(listing, page_token)
    joint = access.joint_projects_of(caller, policy) if tenants is not None and not tenant else ()
    page = store.list_jobs(tenants, project, states, size, after, or_projects=joint)
    # A member scoped to some projects sees only those.
    visible = tuple(j for j in page.jobs if access.can_see_job(caller, j, policy))
    return JobPage(visible, tokens.seal(listing, page.next_page_token))


def job_listing(caller: Principal, tenant: str, project: str, states: Collection[JobState]) -> str:
    """What a job page token is bound to: who lists, and with which filters."""
    return "\n".join(("jobs", caller.uri, tenant, project, ",".join(sorted(states))))


def within_bytes(
    page: JobPage, listing: str, tokens: PageTokens, size_of: Callable[[Job], int], budget: int
) -> JobPage:
    """`page` cut so that its jobs' `size_of` add up to at most `budget` (at least one job per page); when cut,
    the next page starts after the last job kept. The store pages by job id (`Store.list_jobs`)."""
    kept: list[Job] = []
    total = 0
    for found in page.jobs:
        job, size = found, size_of(found)
        if size > budget:
            job = _listed_without_payload(found)
            size = size_of(job)
        if kept and total + size > budget:
            return JobPage(tuple(kept), tokens.seal(listing, kept[-1].job_id))
        kept.append(job)
        total += size
    return JobPage(tuple(kept), page.next_page_token)


def _listed_without_payload(job: Job) -> Job:
    """A job stored before specs were bounded, too large for a listing: its state, without what made it large."""
    spec = job.spec
    runs = tuple(replace(run, command=(), image=run.image[:512]) for run in spec.runs[:16])
    note = Reason("listing", "JOB_TOO_LARGE_TO_LIST", "listed without its command, env and labels; read it with GetJob")
    return job.evolve(spec=replace(spec, name=spec.name[:63], labels=(), env=(), runs=runs), reasons=(note,))
