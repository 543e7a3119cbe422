"""What the gateway knows of a site at one instant, as plain dataclasses: pools, the centre's terms, the view.

Owns: the shape of a site's capacity and terms as placement reads them. No I/O, no gRPC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fedgate.common.terms import SiteTerms as CentreTerms
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
class SiteTerms(CentreTerms):
    """The centre's terms as its agent reports them (`fedgate.common.terms`: the rule the agent enforces),
    read by placement for a job spec. Empty accepts all."""

    def refusal(self, spec: JobSpec, image: str) -> str:
        """Why the centre would refuse this job ('' when it would take it)."""
        refused = self.judge(tenant=spec.tenant, project=spec.project, cards=spec.resources.cards, image=image)
        return refused.message if refused is not None else ""


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
    liveness: str = "live"
    """live, suspect (heartbeats missed) or lost (silent past its lease); `gateway.sites.liveness`."""
    liveness_reason: str = ""

    def leased_cards(self, accelerator_class: str) -> int:
        return sum(n for cls, n in self.leased if cls == accelerator_class)

    def free_cards(self, pool: Pool) -> int:
        """Free cards the gateway may still place: the site's word, bounded by what it offered minus leases."""
        return max(0, min(pool.free, pool.offered - self.leased_cards(pool.accelerator_class)))
