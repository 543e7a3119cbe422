"""The network between member centres, as the policy states it: links, the default for unstated pairs, datasets.

Owns: `Network`, built once per policy from its `network:` section (`gateway.policy.document` checks it), and the
questions placement asks of it: the link between two sites (stated, the default, or unknown and then weighed as
the worst stated link), the weakest link of a set of sites as a ranking key, whether a link is thin
(`THIN_BANDWIDTH_GBPS`, `THIN_LATENCY_MS`), and how long a dataset takes to reach a site
(`DatasetSource.transfer_s`). It does not decide placement (`gateway.gangs.plan`, `gateway.placement.transfer`)
and does no I/O. A policy without the section has the empty `Network`, which every caller treats as
"nothing known": no ranking term, no reasons.
"""

from __future__ import annotations

import functools
import itertools
import math
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

THIN_BANDWIDTH_GBPS = 25.0
"""A link below this bandwidth is thin for a gang: a collective over it is slow (a gang still runs over it)."""
THIN_LATENCY_MS = 20.0
"""A link above this latency is thin for a gang, whatever its bandwidth."""


@dataclass(frozen=True)
class Link:
    """What placement assumes between two sites. `stated`: the policy names this pair (or gives a default);
    otherwise the figures are the worst stated link's, standing in for an unknown one."""

    bandwidth_gbps: float
    latency_ms: float
    stated: bool = True

    @property
    def thin(self) -> bool:
        return not self.stated or self.bandwidth_gbps < THIN_BANDWIDTH_GBPS or self.latency_ms > THIN_LATENCY_MS

    def text(self) -> str:
        figures = f"{_number(self.bandwidth_gbps)} Gb/s, {_number(self.latency_ms)} ms"
        return figures if self.stated else f"unknown (no link stated; weighed as the worst stated, {figures})"


@dataclass(frozen=True)
class Dataset:
    name: str
    site: str
    size_gb: float


@dataclass(frozen=True)
class Network:
    """Links keyed by the sorted pair of sites; `default` for unstated pairs (None: unknown); datasets by name."""

    links: Mapping[tuple[str, str], Link] = field(default_factory=lambda: types.MappingProxyType({}))
    default: Link | None = None
    datasets: Mapping[str, Dataset] = field(default_factory=lambda: types.MappingProxyType({}))

    @property
    def knows_links(self) -> bool:
        """Whether the policy says anything about links (otherwise gangs are planned as before, without a word)."""
        return bool(self.links) or self.default is not None

    def link(self, a: str, b: str) -> Link | None:
        """The link between two different sites; None when nothing is stated at all (no links, no default)."""
        found = self.links.get((a, b) if a < b else (b, a))
        if found is not None:
            return found
        return self.default if self.default is not None else self._unknown

    @functools.cached_property
    def _unknown(self) -> Link | None:
        """What an unstated pair is weighed as without a default: the lowest stated bandwidth and the highest
        stated latency (None without links)."""
        if not self.links:
            return None
        slowest = min(k.bandwidth_gbps for k in self.links.values())
        return Link(slowest, max(k.latency_ms for k in self.links.values()), stated=False)

    def weakest(self, sites: Iterable[str]) -> tuple[tuple[str, str], Link] | None:
        """The weakest link among a set of sites (lowest bandwidth, then highest latency, then names); None for
        fewer than two sites or when nothing is known."""
        found: tuple[tuple[float, float, str, str], tuple[str, str], Link] | None = None
        for a, b in itertools.combinations(sorted(sites), 2):
            link = self.link(a, b)
            if link is None:
                return None
            key = (link.bandwidth_gbps, -link.latency_ms, a, b)
            if found is None or key < found[0]:
                found = (key, (a, b), link)
        return (found[1], found[2]) if found is not None else None

    def rank(self, sites: Iterable[str]) -> tuple[float, float]:
        """A ranking key for a set of sites, smaller is better connected: its weakest link's bandwidth (negated),
        then latency. (0, 0) when nothing is known, so every set ranks alike."""
        weakest = self.weakest(sites)
        if weakest is None:
            return (0.0, 0.0)
        return (-weakest[1].bandwidth_gbps, weakest[1].latency_ms)

    def source(self, dataset: str) -> DatasetSource | None:
        """Where a named dataset comes from, for placement; None when the job names none (or an unknown one,
        which admission refuses)."""
        found = self.datasets.get(dataset) if dataset else None
        return DatasetSource(found, self) if found is not None else None


@dataclass(frozen=True)
class DatasetSource:
    """A dataset and the network it is copied over."""

    dataset: Dataset
    network: Network

    def transfer_s(self, site: str) -> float:
        """Estimated seconds to copy the dataset to `site`: 0 at its own site, size x 8 / bandwidth + latency
        elsewhere, `math.inf` when no link is known at all."""
        if site == self.dataset.site:
            return 0.0
        link = self.network.link(self.dataset.site, site)
        if link is None:
            return math.inf
        return self.dataset.size_gb * 8 / link.bandwidth_gbps + link.latency_ms / 1000


def duration_text(seconds: float) -> str:
    """A transfer time for humans: '0 s', '45 s', '13 min 20 s', '2 h 5 min', 'unknown'."""
    if math.isinf(seconds):
        return "unknown"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(whole, 3600)
    return f"{hours} h {rest // 60} min" if rest // 60 else f"{hours} h"


def _number(value: float) -> str:
    return f"{value:g}"
