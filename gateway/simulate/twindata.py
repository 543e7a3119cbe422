"""The trace's data for the what-if twin: each job's `dataset_site`/`dataset_gb` as a dataset of the policy.

Owns: naming one policy dataset per distinct (dataset_site, dataset_gb) of a trace (`trace_datasets`) and the
policy the twin runs under with them (`with_datasets`): the policy file's own document with those datasets
(and each centre holding one that it does not list, so the datasets may live there) added, then read by the policy's
own loader (`gateway.policy.document.parse_policy`), so every rule of the file and of the loader still holds.
A job that then names its dataset is placed by the gateway's transfer rule (`gateway.placement.transfer`):
nothing of that rule is here. A job with a dataset_site but no size (dataset_gb 0) names no dataset: the
policy needs a size above 0 and there is nothing to weigh. No clock, no scheduling.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import yaml

from fedgate.common.yaml import load_yaml
from gateway.errors import ConfigError
from gateway.policy.document import FederationPolicy, parse_policy
from gateway.simulate.sites import SiteSpec
from gateway.simulate.trace import TraceJob

PREFIX = "trace-"
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")  # the policy's name pattern (gateway.policy.model.NAME)


def _slug(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")


def _gigabytes(gb: float) -> str:
    return str(int(gb)) if float(gb).is_integer() else f"{gb:g}".replace(".", "p")


def trace_datasets(jobs: Iterable[TraceJob]) -> dict[tuple[str, float], str]:
    """One dataset name per distinct (dataset_site, dataset_gb) with a size, in order of first use:
    `trace-<site>-<gb>gb` (e.g. trace-centre-1-40gb, trace-centre-1-2p5gb), or `trace-data-<n>` when that is not
    a valid policy name or is taken by another pair (a site name with capitals or dots)."""
    names: dict[tuple[str, float], str] = {}
    used: set[str] = set()
    for job in jobs:
        key = (job.dataset_site, job.dataset_gb)
        if not job.dataset_site or job.dataset_gb <= 0 or key in names:
            continue
        name = f"{PREFIX}{_slug(job.dataset_site)}-{_gigabytes(job.dataset_gb)}gb"
        if not _NAME.fullmatch(name) or name in used:
            name = f"{PREFIX}data-{len(names) + 1}"
        names[key] = name
        used.add(name)
    return names


def with_datasets(
    policy_path: Path, datasets: Mapping[tuple[str, float], str], sites: Sequence[SiteSpec]
) -> FederationPolicy:
    """The policy at `policy_path` with `datasets` added to its network section, and each dataset's site it
    lacks added to its sites (with its region from `sites`). Raises ConfigError when a name clashes or does not
    fit the policy (a centre whose name is not a policy name cannot hold a dataset)."""
    raw = policy_path.read_bytes()
    data = load_yaml(raw, str(policy_path), error=ConfigError).data
    if not isinstance(data, dict):
        return parse_policy(raw, str(policy_path))  # let the loader say what is wrong with it
    listed = data.setdefault("sites", [])
    known = {s.get("name") for s in listed if isinstance(s, dict)}
    regions = {s.name: s.region or "unknown" for s in sites}
    for name in dict.fromkeys(site for site, _ in datasets):
        if name not in known:
            listed.append({"name": name, "region": regions.get(name, "unknown")})
    network = data.setdefault("network", {}) or {}
    data["network"] = network
    policy_datasets = network.setdefault("datasets", {})
    for (site, gb), name in datasets.items():
        if name in policy_datasets:
            raise ConfigError(
                f"{policy_path}: dataset {name!r} is already in the policy; the twin names the"
                f" trace's data {PREFIX}<site>-<gb>gb, so rename the policy's dataset"
            )
        policy_datasets[name] = {"site": site, "size_gb": gb}
    source = f"{policy_path} (with the trace's {len(datasets)} datasets)"
    return parse_policy(yaml.safe_dump(data, sort_keys=False).encode(), source)
