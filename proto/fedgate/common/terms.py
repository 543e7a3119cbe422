"""The centre's terms (its veto over federated work) and the one rule that applies them.

Owns: `SiteTerms`, the part of a centre's policy that its agent reports with capacity (whom it serves, how big
a job it takes, which images), and `SiteTerms.judge`, the rule both sides apply: the agent enforces it on every
launch and booking, the gateway applies it before placing so that it never sends work the centre would refuse.
Because it lives once, the gateway can never accept what the agent refuses, or the other way round. It does not
know offer windows or the clock (the agent's `agents.policy.terms`), nor jobs (callers pass plain values).
"""

from __future__ import annotations

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
    """Allowed image prefixes (`host[:port][/path]`); empty: any image."""

    def judge(self, *, tenant: str, project: str, cards: int, image: str) -> TermsRefusal | None:
        """None when the terms take a job of `tenant`/`project` needing `cards` cards that runs `image`
        (empty: a bare command, not subject to the registries); otherwise the first term that refuses it, in
        the order tenants, projects, max_job_cards, image_registries."""
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
            return TermsRefusal("image_registries", f"image {image} is not from an allowed registry ({allowed})")
        return None


def project_accepted(projects: tuple[str, ...], tenant: str, project: str) -> bool:
    """A tenant named in `projects` may run only its listed projects; other tenants are not limited here
    (`deepsea-ai/llama-sft` says nothing about panda-lm)."""
    limited = [p for p in projects if p.partition("/")[0] == tenant]
    return not limited or f"{tenant}/{project}" in limited


def image_allowed(image: str, registries: tuple[str, ...]) -> bool:
    """Is `image` under one of `registries`? Empty `registries` allow any image, and a launch without an
    image (a bare command) is not subject to them. A host prefix (`registry.example.org`, `host:5000`)
    matches images below it (`registry.example.org/team/app:1`), never another host or port
    (`registry.example.org.evil`, `registry.example.org:5001/x`); a prefix with a path
    (`harbor.centre-a.cn/ai`) also matches that repository itself with a tag or digest (`.../ai:1`)."""
    if not registries or not image:
        return True
    return any(_under(image, registry) for registry in registries)


def _under(image: str, registry: str) -> bool:
    if not image.startswith(registry):
        return False
    rest = image[len(registry) :]
    if "/" not in registry:  # a host: only images below it; `host:` would be another port
        return rest.startswith("/") and len(rest) > 1
    return rest == "" or (rest[0] in "/:@" and len(rest) > 1)
