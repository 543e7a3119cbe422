"""The policy language federation admins write, as a frozen dataclass model.

Owns: every key a `kind: Federation` document may hold, its type, its default and a line of documentation. The
strict reader and the JSON Schema are both generated from this model (`gateway.policy.schema`); the meaning
of the rules is `gateway.policy.engine`'s. Names are DNS-label-like; region codes and classifications are free
strings (so `NO` stays the string "NO").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from gateway.policy.schema import meta

NAME = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
NAME_HINT = "use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit"
CLASS_OR_ANY = r"\*|[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
HOURS = r"([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]"
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _name(doc: str) -> dict[str, object]:
    return meta(doc, pattern=NAME, hint=NAME_HINT)


@dataclass(frozen=True)
class Metadata:
    """Who this federation is."""

    name: str = field(metadata=_name("the federation's name: the trust domain of its spiffe:// identities"))
    description: str = field(default="", metadata=meta("free text for humans"))


@dataclass(frozen=True)
class Quota:
    """Limits on what a tenant or project holds at once and uses over a period. Absent limits do not apply."""

    concurrent_cards: Mapping[str, int] = field(
        default_factory=dict,
        metadata=meta(
            "cards held at once, per accelerator class; '*' counts every class together",
            key_pattern=CLASS_OR_ANY,
            key_hint="a class id from the catalogue, or '*'",
        ),
    )
    concurrent_pflops: float | None = field(
        default=None, metadata=meta("normalised compute held at once: cards x dense BF16 PFLOPS", minimum=0)
    )
    card_hours: float | None = field(default=None, metadata=meta("card-hours per period", minimum=0))
    period: Literal["day", "week", "month"] = field(default="month", metadata=meta("the card_hours period (UTC)"))
    share: float | None = field(
        default=None,
        metadata=meta(
            "instead of numbers: this share (0-1) of the cards sites offer now, per class", minimum=0, maximum=1
        ),
    )


@dataclass(frozen=True)
class MemberSpec:
    """A user's role in a tenant: member (submit, cancel, read) or viewer (read only)."""

    user: str = field(metadata=_name("the user's name, as in its certificate or token"))
    role: Literal["member", "viewer"] = field(metadata=meta("member: submit, cancel, read; viewer: read only"))
    projects: tuple[str, ...] = field(default=(), metadata=meta("only these projects (empty: all of the tenant's)"))


@dataclass(frozen=True)
class ProjectSpec:
    """A project of one tenant."""

    name: str = field(metadata=_name("unique within the tenant and among joint projects"))
    weight: float = field(default=1.0, metadata=meta("fair-share weight inside the tenant", minimum=0))
    quota: Quota | None = field(default=None, metadata=meta("the project's own limits"))


@dataclass(frozen=True)
class AcceleratorAccess:
    """Which accelerator classes a tenant may use (e.g. for export-control constraints)."""

    allow: tuple[str, ...] = field(default=(), metadata=meta("only these classes ('*' or empty: all)"))
    deny: tuple[str, ...] = field(default=(), metadata=meta("never these classes; deny wins over allow"))


@dataclass(frozen=True)
class TenantSpec:
    """An organisation that submits work: a model vendor, or a centre that also runs its own jobs."""

    name: str = field(metadata=_name("the tenant's name, as in its users' certificates"))
    display_name: str = field(default="", metadata=meta("for humans"))
    organisation: str = field(default="", metadata=meta("the legal organisation behind the tenant"))
    weight: float = field(default=1.0, metadata=meta("fair-share weight among tenants", minimum=0))
    projects: tuple[ProjectSpec, ...] = field(default=(), metadata=meta("the tenant's own projects"))
    members: tuple[MemberSpec, ...] = field(
        default=(), metadata=meta("who acts for the tenant; empty: every user with a certificate of the tenant")
    )
    quota: Quota | None = field(default=None, metadata=meta("limits over all of the tenant's projects"))
    accelerators: AcceleratorAccess | None = field(default=None, metadata=meta("which classes it may use"))


@dataclass(frozen=True)
class JointMember:
    """A tenant (all its members, or one user of it) taking part in a joint project."""

    tenant: str = field(metadata=_name("a tenant of this federation"))
    user: str = field(default="", metadata=meta("one user of that tenant; empty: every member of it"))
    role: Literal["member", "viewer"] = field(default="member", metadata=meta("the role in this project"))


@dataclass(frozen=True)
class JointProject:
    """A project several tenants work on together (e.g. vendors and centres training one large model): one
    shared quota, and every member sees every job and the usage of the project."""

    name: str = field(metadata=_name("unique among all projects of the federation"))
    description: str = field(default="", metadata=meta("for humans"))
    members: tuple[JointMember, ...] = field(default=(), metadata=meta("who takes part"))
    quota: Quota | None = field(default=None, metadata=meta("the shared limits"))
    weight: float = field(default=1.0, metadata=meta("fair-share weight", minimum=0))


@dataclass(frozen=True)
class PriorityClass:
    """How urgent a job is; higher runs first, and may preempt preemptible work where policy allows."""

    name: str = field(metadata=_name("referenced by a job's priorityClass"))
    priority: int = field(metadata=meta("higher runs first", minimum=0, maximum=1_000_000))
    preemptible: bool = field(default=False, metadata=meta("jobs of this class may be preempted"))
    default: bool = field(default=False, metadata=meta("the class of jobs that name none (at most one)"))
    grace_period_s: int = field(
        default=30,
        metadata=meta(
            "when a job of this class is preempted: seconds between the signal to checkpoint (SIGTERM) and the kill",
            minimum=1,
            maximum=3600,
        ),
    )


@dataclass(frozen=True)
class SiteSpec:
    """What the federation knows about a member centre beyond what its agent reports."""

    name: str = field(metadata=_name("the site's name, as in its certificate"))
    region: str = field(metadata=meta("region code, e.g. cn-east or NO (kept as a string)", pattern=r"\S{1,64}"))
    organisation: str = field(default="", metadata=meta("the organisation that runs the centre"))
    labels: Mapping[str, str] = field(default_factory=dict, metadata=meta("free labels rules can match"))
    price_per_card_hour: Mapping[str, float] = field(
        default_factory=dict, metadata=meta("price per card-hour, per class", key_pattern=CLASS_OR_ANY)
    )
    weight: float = field(default=1.0, metadata=meta("placement preference, higher first", minimum=0))


@dataclass(frozen=True)
class Residency:
    """Where data of one classification may be processed: for data from a region, the site regions allowed."""

    classification: str = field(metadata=meta("a data classification a job declares, e.g. personal"))
    allowed: Mapping[str, tuple[str, ...]] = field(
        metadata=meta("data region -> site regions that may run the job; '*' for data from any region")
    )
    message: str = field(default="", metadata=meta("shown when a site is refused for this reason"))


@dataclass(frozen=True)
class LinkSpec:
    """The network between two centres, the same both ways."""

    between: tuple[str, ...] = field(metadata=meta("the two sites the link joins, e.g. [centre-a, centre-b]"))
    bandwidth_gbps: float = field(metadata=meta("usable bandwidth between them, Gb/s (above 0)", minimum=0))
    latency_ms: float = field(metadata=meta("one-way latency between them, ms (above 0)", minimum=0))


@dataclass(frozen=True)
class LinkDefault:
    """What to assume between two centres no link names."""

    bandwidth_gbps: float = field(metadata=meta("usable bandwidth, Gb/s (above 0)", minimum=0))
    latency_ms: float = field(metadata=meta("one-way latency, ms (above 0)", minimum=0))


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset jobs may name, and where it lives."""

    site: str = field(metadata=_name("the site that holds the dataset"))
    size_gb: float = field(metadata=meta("its size in GB (above 0): what a job elsewhere must copy", minimum=0))


@dataclass(frozen=True)
class NetworkSpec:
    """The network between member centres and where datasets live: gangs prefer well-linked sites, and a job
    that names a dataset weighs the copy to each site against where it fits."""

    links: tuple[LinkSpec, ...] = field(default=(), metadata=meta("links between pairs of sites"))
    default: LinkDefault | None = field(
        default=None, metadata=meta("for pairs no link names; absent: unknown, weighed as the worst stated link")
    )
    datasets: Mapping[str, DatasetSpec] = field(
        default_factory=dict,
        metadata=meta("dataset name -> where it lives and its size", key_pattern=NAME, key_hint=NAME_HINT),
    )


@dataclass(frozen=True)
class Match:
    """What a rule applies to. Every condition given must hold; an empty match applies to every job."""

    tenants: tuple[str, ...] = field(default=(), metadata=meta("any of these tenants"))
    projects: tuple[str, ...] = field(default=(), metadata=meta("any of these projects"))
    classes: tuple[str, ...] = field(default=(), metadata=meta("any of these accelerator classes"))
    regions: tuple[str, ...] = field(default=(), metadata=meta("site regions: makes the rule apply per site"))
    classifications: tuple[str, ...] = field(default=(), metadata=meta("any of these data classifications"))
    labels: Mapping[str, str] = field(default_factory=dict, metadata=meta("job labels that must all be equal"))
    min_cards: int | None = field(default=None, metadata=meta("jobs of at least this many cards", minimum=1))
    max_cards: int | None = field(default=None, metadata=meta("jobs of at most this many cards", minimum=1))
    hours: str = field(default="", metadata=meta("time of day, HH:MM-HH:MM in UTC; may wrap midnight", pattern=HOURS))
    days: tuple[Day, ...] = field(default=(), metadata=meta("days of the week (UTC)"))


@dataclass(frozen=True)
class Requirement:
    """What a `require` rule demands of the jobs it matches."""

    labels: tuple[str, ...] = field(default=(), metadata=meta("label keys the job must carry"))
    max_runtime_s: int | None = field(default=None, metadata=meta("the job's maxRuntime at most this", minimum=1))
    priority_classes: tuple[str, ...] = field(default=(), metadata=meta("the job's priority class among these"))
    classification: bool = field(default=False, metadata=meta("the job must declare a data classification"))


@dataclass(frozen=True)
class Rule:
    """Allow, deny or require, with a message for humans. Rules are checked in order: the first matching allow
    or deny decides; every matching require must be met; no match at all allows."""

    name: str = field(metadata=_name("named in decisions and in `policy explain`"))
    effect: Literal["allow", "deny", "require"] = field(metadata=meta("what a match means"))
    message: str = field(metadata=meta("told to whoever the rule refuses"))
    match: Match = field(default_factory=Match, metadata=meta("what the rule applies to"))
    require: Requirement | None = field(default=None, metadata=meta("for effect require: what must hold"))


@dataclass(frozen=True)
class FederationDocument:
    """A federation policy file (`kind: Federation`)."""

    api_version: Literal["fedgate.io/v1"] = field(metadata=meta("the policy language version", yaml="apiVersion"))
    kind: Literal["Federation"] = field(metadata=meta("this document's kind"))
    metadata: Metadata = field(metadata=meta("the federation"))
    tenants: tuple[TenantSpec, ...] = field(default=(), metadata=meta("who submits work"))
    projects: tuple[JointProject, ...] = field(default=(), metadata=meta("joint projects across tenants"))
    priority_classes: tuple[PriorityClass, ...] = field(default=(), metadata=meta("job priority classes"))
    sites: tuple[SiteSpec, ...] = field(default=(), metadata=meta("member centres: region, labels, prices"))
    residency: tuple[Residency, ...] = field(default=(), metadata=meta("data residency by classification"))
    rules: tuple[Rule, ...] = field(default=(), metadata=meta("allow / deny / require rules, in order"))
    network: NetworkSpec | None = field(
        default=None, metadata=meta("links between sites and where datasets live (optional)")
    )
