"""What the status page shows one caller, read through the same domain methods the JobService answers with.

Owns: `StatusView` (sites and their cards by class, the queue with each job's live reason, recent jobs, usage
by tenant and project) and `read_status`, which asks `JobService` as the caller, so that the page shows
exactly what the API would show them. A part the caller may not read (a role without it) is left out with
the API's own message, never shown from another source. It does not render (that is `gateway.status.render`)
nor authenticate (that is `gateway.transport.status_http`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from gateway.errors import GatewayError
from gateway.identity.principal import Principal
from gateway.jobs.model import Job, JobState
from gateway.jobs.service import JobService
from gateway.sites.model import SiteView
from gateway.trust.pages import Page
from gateway.usage.model import UsageRow

RECENT_JOBS = 20
"""Jobs under "recent": the newest the caller may see."""
MAX_PAGES = 20
"""Pages of 500 read at most per part: a page load must stay cheap on a federation with a long history."""
PAGE_SIZE = 500
USAGE_WINDOW = timedelta(days=7)
"""Usage is shown for this long back from now."""
T = TypeVar("T")


@dataclass(frozen=True)
class Part(Generic[T]):
    """One part of the page: its items, or why the caller may not see it."""

    items: tuple[T, ...] = ()
    refused: str = ""
    truncated: bool = False
    """More existed than was read (MAX_PAGES)."""


@dataclass(frozen=True)
class StatusView:
    caller: Principal
    at: datetime
    sites: Part[SiteView]
    queue: Part[Job]
    recent: Part[Job]
    usage: Part[UsageRow]
    usage_since: datetime


def read_status(jobs: JobService, caller: Principal, now: datetime) -> StatusView:
    """The page's parts as `caller` may see them at `now`."""
    since = now - USAGE_WINDOW
    return StatusView(
        caller,
        now,
        sites=_part(lambda token: _page(jobs.list_sites(caller, PAGE_SIZE, token))),
        queue=_part(lambda token: _jobs(jobs, caller, (JobState.QUEUED,), token)),
        recent=_part(lambda token: _jobs(jobs, caller, (), token), keep=RECENT_JOBS),
        usage=_part(lambda token: _page(jobs.usage_report(caller, since, now, page_size=PAGE_SIZE, page_token=token))),
        usage_since=since,
    )


def _page(page: Page[T]) -> tuple[tuple[T, ...], str]:
    return page.items, page.next_page_token


def _jobs(jobs: JobService, caller: Principal, states: tuple[JobState, ...], token: str) -> tuple[tuple[Job, ...], str]:
    page = jobs.list_jobs(caller, states=states, page_size=PAGE_SIZE, page_token=token)
    return page.jobs, page.next_page_token


def _part(read: Callable[[str], tuple[tuple[T, ...], str]], keep: int = 0) -> Part[T]:
    """Every page `read` gives (at most MAX_PAGES; with `keep`, only the last `keep` items, newest first)."""
    items: deque[T] = deque(maxlen=keep or None)
    token = ""
    try:
        for _ in range(MAX_PAGES):
            page, token = read(token)
            items.extend(page)
            if not token:
                break
    except GatewayError as exc:
        return Part(refused=exc.message)
    found = tuple(reversed(items)) if keep else tuple(items)
    return Part(found, truncated=bool(token))
