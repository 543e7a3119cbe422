"""The centre's terms (its veto over federated work) as pure functions of the policy and an instant.

Owns: `SitePolicy` (the validated `policy:` section of the agent config), the effective offer of a pool and
when the offers may next change (by the window rule of `fedgate.common.offers`, which the gateway's what-if
twin applies too), and whether a launch is acceptable and, if not, which term refuses it and why. The terms
the gateway also applies (tenants, projects, job size, image registries) are judged by `fedgate.common.terms`,
the one rule both sides use. Time is always passed in as an aware datetime; nothing here reads a clock, a file
or a socket. It does not read YAML (`agents.policy.reader`) nor allocate devices (`agents.core.devices`): the
runtime asks here first, then allocates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from agents.core.model import PoolSpec
from fedgate.common.offers import DAYS as DAYS  # noqa: PLC0414 (re-exported: the policy reader names days)
from fedgate.common.offers import Hours as Hours  # noqa: PLC0414 (re-exported for the reader and tests)
from fedgate.common.offers import OfferWindow as OfferWindow  # noqa: PLC0414 (re-exported, as Hours)
from fedgate.common.offers import next_change, offer_of, takes, window_at
from fedgate.common.terms import SiteTerms

PREFIX = "site policy: "
"""Every refusal's message starts with this, so the job's owner sees that the centre, not the job, said no."""


@dataclass(frozen=True)
class SitePolicy:
    """The centre's terms: whom it serves, how big a job it takes, which images, and what share it offers
    when. The default accepts everything and offers each pool's `offered` at all times."""

    tenants: tuple[str, ...] = ()
    """Accepted tenants; empty: every tenant."""
    projects: tuple[str, ...] = ()
    """`tenant/project` pairs; a tenant named here may run only its listed projects."""
    max_job_cards: int | None = None
    """The largest job in cards; None: no limit beyond the offer."""
    image_registries: tuple[str, ...] = ()
    """Allowed image prefixes, `host[:port][/path]`; empty: any image."""
    timezone: str = "UTC"
    """IANA time zone the offer windows are written in."""
    offers: Mapping[str, tuple[OfferWindow, ...]] = field(default_factory=dict)
    """Per pool class, windows checked in order (first that holds wins); the last one always holds.
    A class without an entry is offered at its pool's `offered` at all times."""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)  # ZoneInfo caches instances by key

    @property
    def terms(self) -> SiteTerms:
        """The part of the policy the gateway needs to avoid sending work this site would refuse."""
        return SiteTerms(
            tenants=self.tenants,
            projects=self.projects,
            max_job_cards=self.max_job_cards or 0,
            image_registries=self.image_registries,
        )

    def window(self, accelerator_class: str, at: datetime) -> OfferWindow | None:
        """The window that holds for the class at `at`; None when the class has no schedule."""
        return window_at(self.offers, self.zone, accelerator_class, at)


def effective_offer(policy: SitePolicy, pool: PoolSpec, at: datetime) -> int:
    """Cards of `pool` offered at `at`: min(offered, floor(share(at) * cards)) (`fedgate.common.offers`)."""
    return offer_of(policy.window(pool.accelerator_class, at), pool.offered, pool.cards)


def next_offer_change(policy: SitePolicy, at: datetime) -> datetime | None:
    """The first instant after `at` at which some pool's window may change (`fedgate.common.offers`)."""
    return next_change(policy.offers, policy.zone, at)


@dataclass(frozen=True)
class LaunchRequest:
    """What the terms judge about a launch."""

    tenant: str
    project: str
    accelerator_class: str
    cards: int
    image: str = ""


@dataclass(frozen=True)
class Refusal:
    """Why the centre will not take a launch."""

    term: str
    """The term that refused it: tenants, projects, max_job_cards, image_registries or offers."""
    message: str
    """For the job's owner; starts with `site policy: `."""


def judge_launch(
    policy: SitePolicy, pool: PoolSpec, request: LaunchRequest, at: datetime, in_use: int = 0
) -> Refusal | None:
    """None when the centre's terms take the launch at `at` with `in_use` cards of the pool already held by
    federated jobs; otherwise the first term (in the order of `Refusal.term`) that refuses it. The offers
    term applies to pools with a schedule; a pool without one is limited by its `offered` alone, which the
    device allocator enforces."""
    refused = policy.terms.judge(
        tenant=request.tenant, project=request.project, cards=request.cards, image=request.image
    )
    if refused is not None:
        return Refusal(refused.term, PREFIX + refused.message)
    window = policy.window(pool.accelerator_class, at)
    if window is None:
        return None  # no schedule: the pool's `offered` is the limit, and the device allocator enforces it
    offer = effective_offer(policy, pool, at)
    if not takes(window, offer, request.cards, in_use):
        held = f" and {min(in_use, offer)} of them are in use" if in_use else ""
        return Refusal(
            "offers",
            f"{PREFIX}{pool.accelerator_class} is offered at {offer} cards now "
            f"({_describe_share(window, pool, policy)}){held}; this job needs {request.cards}",
        )
    return None


def _describe_share(window: OfferWindow, pool: PoolSpec, policy: SitePolicy) -> str:
    share = f"{window.share * 100:g} % of {pool.cards}"
    return share if window.always else f"{share} during {window.describe()} {policy.timezone}"
