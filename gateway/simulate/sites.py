"""The federation a simulation replays on: centres and the cards each holds, read strictly from YAML.

Owns: the sites file (`sites: [{name, region, pools: [{class, cards, cards_per_node}]}]`), loaded with the
strict YAML loader and checked field by field (unknown keys refused, errors with file and line), and written
by the trace converters (`write_sites`, which `load_sites` reads back equal). All of a
pool's cards are offered to the federation in the simulation. It does not check class names against the
accelerator catalogue: traces bring their own classes (e.g. `alibaba-v100m32`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fedgate.common.fields import FieldReader
from fedgate.common.yaml import YamlDocument, dump_yaml, load_yaml
from gateway.errors import ConfigError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
NAME_HINT = "use letters, digits, '.', '_' and '-', starting with a letter or digit (at most 63)"
MAX_SITES_BYTES = 16 << 20


@dataclass(frozen=True)
class PoolSpec:
    """Identical cards of one class at a site. `cards_per_node` is informational (placement counts cards)."""

    accelerator_class: str
    cards: int
    cards_per_node: int


@dataclass(frozen=True)
class SiteSpec:
    name: str
    region: str
    pools: tuple[PoolSpec, ...]

    def cards(self, accelerator_class: str) -> int:
        return sum(p.cards for p in self.pools if p.accelerator_class == accelerator_class)


def load_sites(path: Path) -> tuple[SiteSpec, ...]:
    return parse_sites(load_yaml(path, max_bytes=MAX_SITES_BYTES, error=ConfigError))


def parse_sites(doc: YamlDocument) -> tuple[SiteSpec, ...]:
    fields = FieldReader(doc)
    fields.mapping((), allowed=("sites",), required=("sites",))
    items = fields.sequence(("sites",))
    if not items:
        raise fields.error(("sites",), "the list is empty", "describe at least one site")
    sites: list[SiteSpec] = []
    names: set[str] = set()
    for i in range(len(items)):
        path = ("sites", i)
        fields.mapping(path, allowed=("name", "region", "pools"), required=("name", "pools"))
        name = fields.string((*path, "name"), pattern=NAME, hint=NAME_HINT)
        if name in names:
            raise fields.error((*path, "name"), f"site {name!r} is described twice", "give each site one entry")
        names.add(name)
        region = fields.string((*path, "region"), default="")
        pools = fields.sequence((*path, "pools"))
        specs: list[PoolSpec] = []
        for j in range(len(pools)):
            pool_path = (*path, "pools", j)
            fields.mapping(pool_path, allowed=("class", "cards", "cards_per_node"), required=("class", "cards"))
            cls = fields.string((*pool_path, "class"), pattern=NAME, hint=NAME_HINT)
            if any(p.accelerator_class == cls for p in specs):
                raise fields.error((*pool_path, "class"), f"{name} lists class {cls!r} twice", "merge the pools")
            cards = fields.integer((*pool_path, "cards"), minimum=1)
            per_node = fields.integer((*pool_path, "cards_per_node"), default=cards, minimum=1)
            specs.append(PoolSpec(cls, cards, per_node))
        sites.append(SiteSpec(name, region, tuple(specs)))
    return tuple(sites)


def write_sites(path: Path, sites: Sequence[SiteSpec]) -> None:
    data = {
        "sites": [
            {
                "name": s.name,
                "region": s.region,
                "pools": [
                    {"class": p.accelerator_class, "cards": p.cards, "cards_per_node": p.cards_per_node}
                    for p in s.pools
                ],
            }
            for s in sites
        ]
    }
    path.write_text(dump_yaml(data), encoding="utf-8")
