"""The centre's terms (its veto over federated work) and the one rule that applies them.

Owns: `SiteTerms`, the part of a centre's policy that its agent reports with capacity (whom it serves, how big
a job it takes, which images), and `SiteTerms.judge`, the rule both sides apply: the agent enforces it on every
launch and booking, the gateway applies it before placing so that it never sends work the centre would refuse.
Because it lives once, the gateway can never accept what the agent refuses, or the other way round. It does not
know offer windows or the clock (the agent's `agents.policy.terms`), nor jobs (callers pass plain values).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class TermsRefusal:
    """Why the centre's terms refuse a job."""

    term: str
    """The term that refused it: `tenants`, `projects`, `max_job_cards` or `image_registries`."""
    message: str
    """For the job's owner, e.g. `tenant acme is not accepted here`; callers say whose terms these are."""


@dataclass(frozen=True)
class SiteTerms:
    """What a centre accepts from the federation, reported with capacity so the gateway can avoid sending
    work the agent would refuse. Empty tuples accept everything; the agent enforces these on every launch."""

    tenants: tuple[str, ...] = ()
    """Accepted tenants; empty: every tenant."""
    projects: tuple[str, ...] = ()
    """`tenant/project` pairs. A tenant named here is limited to the projects listed for it; accepted
    tenants not named here bring all their projects."""
    max_job_cards: int = 0
    """The largest job, in cards, the centre takes; 0: no limit beyond the offer."""
    image_registries: tuple[str, ...] = ()
    """Allowed registries (`host[:port][/path]`); empty: any image, and bare commands. Once set, a run must
    name an image from one of them (a bare command runs whatever the machine has, so it is refused)."""

    def judge(self, *, tenant: str, project: str, cards: int, image: str) -> TermsRefusal | None:
        """None when the terms take a job of `tenant`/`project` needing `cards` cards that runs `image`
        (empty: a bare command); otherwise the first term that refuses it, in the order tenants, projects,
        max_job_cards, image_registries."""
        if self.tenants and tenant not in self.tenants:
            return TermsRefusal("tenants", f"tenant {tenant or '(none)'} is not accepted here")
        if not project_accepted(self.projects, tenant, project):
            return TermsRefusal("projects", f"project {tenant}/{project} is not accepted here")
        if self.max_job_cards and cards > self.max_job_cards:
            return TermsRefusal(
                "max_job_cards",
                f"jobs of at most {self.max_job_cards} cards are accepted here; this one needs {cards}",
            )
        if not image_allowed(image, self.image_registries):
            allowed = ", ".join(self.image_registries)
            if not image:
                return TermsRefusal(
                    "image_registries", f"only images from {allowed} run here; give the run an image from one of them"
                )
            return TermsRefusal("image_registries", f"image {image} is not from an allowed registry ({allowed})")
        return None


def project_accepted(projects: tuple[str, ...], tenant: str, project: str) -> bool:
    """A tenant named in `projects` may run only its listed projects; other tenants are not limited here
    (`deepsea-ai/llama-sft` says nothing about panda-lm)."""
    limited = [p for p in projects if p.partition("/")[0] == tenant]
    return not limited or f"{tenant}/{project}" in limited


def booking_refusal(
    tenants: tuple[str, ...],
    projects: tuple[str, ...],
    tenant: str,
    project: str,
    accelerator_class: str,
    cards: int,
    room: Callable[[], tuple[int, int, str]] | None,
    no_pool: str,
) -> tuple[str, int]:
    """A centre's word on an advance booking of `cards` of a class for `tenant`/`project`: ('', cards free for
    it) when it takes it, else (why, free). `room` works out (cards left once the overlapping bookings are
    taken, the lowest offer over the window, how that offer was found), or is None when the centre has no pool
    of the class (`no_pool` is then the answer). The agent books by it and the twin's simulated centres too."""
    if tenants and tenant not in tenants:
        return f"site policy: tenant {tenant or '(none)'} is not accepted here", 0
    if not project_accepted(projects, tenant, project):
        return f"site policy: project {tenant}/{project} is not accepted here", 0
    if room is None:
        return no_pool, 0
    free, offer, how = room()
    if cards > free:
        taken = offer - free
        others = f"; {taken} of them are booked for overlapping windows" if taken else ""
        return (
            f"site policy: {accelerator_class}: {offer} cards are {how}{others}; this reservation needs {cards}",
            free,
        )
    return "", free


# Image references as the distribution spec writes them: a registry host (with a dot or a port, or localhost),
# then path components of lowercase letters and digits joined by single separators, then a tag or a digest.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rf"{_LABEL}(?:\.{_LABEL})*(?::[0-9]{{1,5}})?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}"
_IMAGE = re.compile(rf"(?P<host>{_HOST})/(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)(?::{_TAG})?(?:@{_DIGEST})?")
_REGISTRY = re.compile(rf"(?P<host>{_HOST})(?:/(?P<path>{_COMPONENT}(?:/{_COMPONENT})*))?")


def parse_image(image: str) -> tuple[str, tuple[str, ...]] | None:
    """(registry host, repository path components) of a full image reference, or None when `image` is not one
    (no registry host, `..` or empty components, uppercase paths, spaces, a trailing newline)."""
    match = _IMAGE.fullmatch(image)
    if not match or not _is_host(match["host"]):
        return None
    return match["host"].lower(), tuple(match["path"].split("/"))


def parse_registry(registry: str) -> tuple[str, tuple[str, ...]] | None:
    """(host, path components) of an allowed registry `host[:port][/path]`, or None when it is not one."""
    match = _REGISTRY.fullmatch(registry)
    if not match or not _is_host(match["host"]):
        return None
    return match["host"].lower(), tuple(match["path"].split("/")) if match["path"] else ()


def _is_host(first: str) -> bool:
    """The first part names a registry only with a dot or a port, or as localhost (else `team/app` would read
    as a host `team`: engines take such references from their default registry)."""
    return "." in first or ":" in first or first.lower() == "localhost"


def image_allowed(image: str, registries: tuple[str, ...]) -> bool:
    """Is `image` from one of `registries`? Empty `registries` allow anything, bare commands included. Both
    are parsed as references and compared by parts: the same host and port (`registry.example.org` never
    matches `registry.example.org.evil` nor `registry.example.org:5001`), and the registry's path as the first
    components of the image's (`harbor.centre-a.cn/ai` matches `harbor.centre-a.cn/ai:1` and
    `harbor.centre-a.cn/ai/llama`, never `harbor.centre-a.cn/aix`). An image that is not a well-formed
    reference (`registry.example.org/../evil.io/x`) and a bare command are refused once registries are set."""
    if not registries:
        return True
    parsed = parse_image(image)
    if parsed is None:
        return False
    host, path = parsed
    for registry in registries:
        allowed = parse_registry(registry)
        if allowed is not None and allowed[0] == host and path[: len(allowed[1])] == allowed[1]:
            return True
    return False
