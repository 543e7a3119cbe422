"""What the gateway knows of a site at one instant, as plain dataclasses: pools, the centre's terms, the view.

Owns: the shape of a site's capacity and terms as placement reads them. No I/O, no gRPC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.jobs.model import JobSpec


@dataclass(frozen=True)
class Pool:
    """A pool of identical accelerators a site offers. Counts are cards."""

    accelerator_class: str
    total: int
    offered: int
    free: int
    cards_per_node: int = 0
    interconnect: str = ""
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SiteTerms:
    """What a centre accepts from the federation (its veto), as its agent reports it. Empty accepts all."""

    tenants: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()  # "tenant/project"
    max_job_cards: int = 0  # 0: no limit beyond the offer
    image_registries: tuple[str, ...] = ()

    def refusal(self, spec: JobSpec, image: str) -> str:
        """Why the centre would refuse this job ('' when it would take it)."""
        if self.tenants and spec.tenant not in self.tenants:
            return f"tenant {spec.tenant} is not accepted"
        # Projects limit only the tenants they name: `deepsea-ai/llama-sft` says nothing about panda-lm.
        limited = [p for p in self.projects if p.partition("/")[0] == spec.tenant]
        if limited and f"{spec.tenant}/{spec.project}" not in limited:
            return f"project {spec.tenant}/{spec.project} is not accepted"
        if self.max_job_cards and spec.resources.cards > self.max_job_cards:
            return f"it takes jobs of at most {self.max_job_cards} cards"
        if image and self.image_registries and not any(_under(image, r) for r in self.image_registries):
            return f"image {image} is not from an allowed registry"
        return ""


def _under(image: str, registry: str) -> bool:
    """The agents' rule, exactly (they enforce it): a bare host matches only images below it (`host:5001`
    is another registry); a prefix with a path also matches itself and what follows it after `/`, `:`, `@`."""
    if not image.startswith(registry):
        return False
    rest = image[len(registry) :]
    if "/" not in registry:
        return rest.startswith("/") and len(rest) > 1
    return rest == "" or (rest[0] in "/:@" and len(rest) > 1)


@dataclass(frozen=True)
class SiteView:
    """What placement needs to know about a site at one instant."""

    name: str
    connected: bool
    draining: bool
    pools: tuple[Pool, ...]
    # Cards per class already leased by this gateway at the site (dispatched or running).
    leased: tuple[tuple[str, int], ...] = ()
    agent_version: str = ""
    last_seen: datetime | None = None
    terms: SiteTerms | None = None

    def leased_cards(self, accelerator_class: str) -> int:
        return sum(n for cls, n in self.leased if cls == accelerator_class)

    def free_cards(self, pool: Pool) -> int:
        """Free cards the gateway may still place: the site's word, bounded by what it offered minus leases."""
        return max(0, min(pool.free, pool.offered - self.leased_cards(pool.accelerator_class)))
