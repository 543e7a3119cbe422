"""Convert the Alibaba GPU cluster trace (cluster-trace-gpu-v2023, "openb") into a federation to simulate.

Owns: reading the trace's pod and node lists strictly and turning them into simulator jobs and sites (the
command writes them with the shared writers). The choices, each a simplification to keep in mind when
reading the results:
- Centres: the GPU nodes are shuffled with `random.Random(seed)` and dealt round-robin into N centres
  (`centre-1` .. `centre-N`, equal node counts, a random mix of models). A centre's pool of a model holds
  all its cards of that model; `cards_per_node` is the largest node of that model there. The trace's node
  list has no notion of centres, so the split is random, not geographic.
- Load (`node_share`, `time_compression`; both 1 by default: the trace as it is): the openb pod list is a
  snapshot of pods over 149 days (almost all created in the last 45) on 6,212 cards; its average demand is
  about 17 cards and its peak 70, so replayed as is nothing ever waits. `node_share` keeps that share of
  the nodes (the first of the shuffled list, at least one), `time_compression` divides every submit time
  (arrivals that many times as dense); durations are kept. Both are stated with every result.
- Classes: model M becomes the pseudo class `alibaba-<m>` (e.g. `alibaba-v100m32`); these are not in the
  accelerator catalogue and need not be: the simulator matches class names directly.
- Jobs: one per pod that ran and asked for a GPU. Pods with num_gpu 0 (CPU only), without a
  scheduled_time (never ran: Pending), or with deletion_time before scheduled_time are skipped, and counted.
- submit_s = creation_time; duration_s = deletion_time - scheduled_time (the trace's own definition; a
  Failed pod ran for that long too).
- cards = num_gpu. A fractional pod (gpu_milli < 1000, num_gpu 1) counts as one whole card: the simulator
  does not share cards, so it overstates those pods' demand.
- accelerator = the class of the gpu_spec model when gpu_spec names exactly one; otherwise empty (any
  class), including when it allows several models (the trace format carries one class or none).
- home_site: a random centre (same generator, after the split) among those holding at least `cards` cards
  of a model the pod allows; when no centre can, any centre (the job is then unschedulable when siloed).
  `homes_by` "even" (the default) gives each such centre the same chance, whatever its size: centres see
  unequal load for their size, as members of a federation do. "size" weights each by the cards of those
  models it holds: every centre expects the same load for its size, the split least favourable to
  federating.
- Tenants (optional, off by default): with `tenants`, each job gets one of them at random (its own generator,
  seeded from `seed`, so homes and centres are the same with or without it), and a project: one of
  `projects` at random when given, else `<tenant>-default`. The trace has no notion of tenants: this is a
  made-up split for fair-share what-ifs, not something the trace says.
- Gangs (optional, off by default): `gang_share` F marks round(F x the multi-card jobs) of them, chosen at
  random with the same seeded generator, as gangs that may span two centres (`max_sites` 2).
Written with `gateway.simulate.trace.write_trace` (the smallest header that keeps every stated field), a
conversion without the optional settings is the six-column trace it always was, byte for byte.
"""

from __future__ import annotations

import csv
import io
import random
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from gateway.errors import ConfigError
from gateway.jobs.validate import NAME as POLICY_NAME
from gateway.jobs.validate import NAME_HINT as POLICY_NAME_HINT
from gateway.simulate.sites import PoolSpec, SiteSpec
from gateway.simulate.trace import TraceJob

POD_COLUMNS = ("name", "num_gpu", "gpu_milli", "gpu_spec", "creation_time", "deletion_time", "scheduled_time")
NODE_COLUMNS = ("sn", "gpu", "model")
CLASS_PREFIX = "alibaba-"
HOMES_BY = ("even", "size")


@dataclass(frozen=True)
class Node:
    name: str
    cards: int
    model: str


@dataclass(frozen=True)
class Pod:
    name: str
    num_gpu: int
    gpu_milli: int
    models: tuple[str, ...]  # () when any model will do
    creation: int
    deletion: int | None
    scheduled: int | None
    line: int


@dataclass
class Conversion:
    """What came out, and what was left out and why (counts of pods)."""

    jobs: tuple[TraceJob, ...]
    sites: tuple[SiteSpec, ...]
    skipped: Counter[str] = field(default_factory=Counter)
    fractional: int = 0  # pods that asked for part of a card, counted as one card


def model_class(model: str) -> str:
    return CLASS_PREFIX + model.lower()


def _rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}", metadata={"file": str(path)}) from exc
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    missing = [c for c in required if c not in (reader.fieldnames or ())]
    if missing:
        raise _error(path, 1, f"missing column(s) {', '.join(missing)}; this converter needs {', '.join(required)}")
    try:
        for row in reader:
            if None in row or any(row[c] is None for c in required):
                raise _error(path, reader.line_num, f"{len(row)} fields; the header has {len(reader.fieldnames or ())}")
            yield reader.line_num, row
    except csv.Error as exc:
        raise _error(path, reader.line_num, f"not valid CSV: {exc}") from exc


def _int(row: dict[str, str], column: str, path: Path, line: int, *, optional: bool = False) -> int | None:
    text = row[column].strip()
    if not text and optional:
        return None
    try:
        value = int(text)
    except ValueError:
        raise _error(path, line, f"{column} {text!r} is not a whole number") from None
    if value < 0:
        raise _error(path, line, f"{column} must not be negative, got {value}")
    return value


def read_nodes(path: Path) -> tuple[Node, ...]:
    nodes = []
    for line, row in _rows(path, NODE_COLUMNS):
        cards, model = _int(row, "gpu", path, line), row["model"].strip()
        assert cards is not None
        if cards and not model:
            raise _error(path, line, "a node with cards needs a model")
        if cards:
            nodes.append(Node(row["sn"].strip(), cards, model))
    if not nodes:
        raise ConfigError(f"{path}: no node with a GPU", metadata={"file": str(path)})
    return tuple(nodes)


def read_pods(path: Path) -> tuple[Pod, ...]:
    pods = []
    for line, row in _rows(path, POD_COLUMNS):
        num_gpu, milli = _int(row, "num_gpu", path, line), _int(row, "gpu_milli", path, line)
        creation = _int(row, "creation_time", path, line)
        assert num_gpu is not None and milli is not None and creation is not None
        spec = row["gpu_spec"].strip()
        models = tuple(sorted(m.strip() for m in spec.split("|") if m.strip())) if spec else ()
        deletion = _int(row, "deletion_time", path, line, optional=True)
        scheduled = _int(row, "scheduled_time", path, line, optional=True)
        pods.append(Pod(row["name"].strip(), num_gpu, milli, models, creation, deletion, scheduled, line))
    return tuple(pods)


def convert(
    pods: Sequence[Pod],
    nodes: Sequence[Node],
    centres: int,
    seed: int,
    *,
    node_share: float = 1.0,
    time_compression: float = 1.0,
    homes_by: str = "even",
    tenants: Sequence[str] = (),
    projects: Sequence[str] = (),
    gang_share: float = 0.0,
) -> Conversion:
    if centres < 1:
        raise ValueError("at least one centre")
    if not 0 < node_share <= 1:
        raise ValueError(f"node_share must be in (0, 1], got {node_share}")
    if not time_compression >= 1:
        raise ValueError(f"time_compression must be at least 1, got {time_compression}")
    if homes_by not in HOMES_BY:
        raise ValueError(f"homes_by must be one of {', '.join(HOMES_BY)}, got {homes_by!r}")
    if projects and not tenants:
        raise ValueError("projects need tenants: a project belongs to a tenant")
    for problem in (name_list_problem("tenant", tenants), name_list_problem("project", projects)):
        if problem:
            raise ValueError(problem)
    if not 0 <= gang_share <= 1:
        raise ValueError(f"gang_share must be in [0, 1], got {gang_share}")
    rng = random.Random(seed)
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    shuffled = shuffled[: max(1, round(node_share * len(shuffled)))]
    cards: list[dict[str, int]] = [defaultdict(int) for _ in range(centres)]
    per_node: list[dict[str, int]] = [defaultdict(int) for _ in range(centres)]
    for i, node in enumerate(shuffled):
        cards[i % centres][node.model] += node.cards
        per_node[i % centres][node.model] = max(per_node[i % centres][node.model], node.cards)
    names = [f"centre-{i + 1}" for i in range(centres)]
    sites = tuple(
        SiteSpec(
            names[i],
            f"region-{i + 1}",
            tuple(PoolSpec(model_class(m), cards[i][m], per_node[i][m]) for m in sorted(cards[i])),
        )
        for i in range(centres)
    )
    out = Conversion((), sites)
    jobs = []
    for pod in pods:
        if pod.num_gpu == 0:
            out.skipped["no GPU"] += 1
            continue
        if pod.scheduled is None or pod.deletion is None:
            out.skipped["never ran"] += 1
            continue
        if pod.deletion < pod.scheduled:
            out.skipped["deleted before scheduled"] += 1
            continue
        if pod.gpu_milli < 1000:
            out.fractional += 1
        homes = [i for i in range(centres) if any(cards[i].get(m, 0) >= pod.num_gpu for m in pod.models or cards[i])]
        if homes and homes_by == "size":
            usable = [sum(n for m, n in cards[i].items() if not pod.models or m in pod.models) for i in homes]
            home = names[rng.choices(homes, usable)[0]]
        else:
            home = names[rng.choice(homes)] if homes else rng.choice(names)
        accelerator = model_class(pod.models[0]) if len(pod.models) == 1 else ""
        duration = pod.deletion - pod.scheduled
        submit = pod.creation / time_compression
        jobs.append(TraceJob(pod.name, submit, float(duration), pod.num_gpu, accelerator, home, pod.line))
    out.jobs = _assign(jobs, seed, tenants, projects, gang_share)
    return out


def name_list_problem(kind: str, names: Sequence[str]) -> str:
    """What is wrong with a list of tenant or project names ("" when nothing): each a policy name (and a
    tenant's `<tenant>-default` project too), none twice."""
    for i, name in enumerate(names):
        derived = (name, f"{name}-default") if kind == "tenant" else (name,)
        if not all(POLICY_NAME.fullmatch(n) for n in derived):
            return f"{kind} {name!r} is not a valid name; {POLICY_NAME_HINT} (at most 55 for a tenant)"
        if name in names[:i]:
            return f"{kind} {name!r} is listed twice"
    return ""


def _assign(
    jobs: Sequence[TraceJob], seed: int, tenants: Sequence[str], projects: Sequence[str], gang_share: float
) -> tuple[TraceJob, ...]:
    """Tenants, projects and gangs, drawn from a generator of their own so that the rest stays as it was."""
    rng = random.Random(f"alibaba-tenants-and-gangs:{seed}")
    out = list(jobs)
    if tenants:
        for i, job in enumerate(out):
            tenant = rng.choice(tenants)
            project = rng.choice(projects) if projects else f"{tenant}-default"
            out[i] = replace(job, tenant=tenant, project=project)
    multi = [i for i, job in enumerate(out) if job.cards > 1]
    for i in sorted(rng.sample(multi, round(gang_share * len(multi)))):
        out[i] = replace(out[i], max_sites=2)
    return tuple(out)


def _error(path: Path, line: int, problem: str) -> ConfigError:
    return ConfigError(f"{path}:{line}: {problem}", metadata={"file": str(path), "line": str(line)})
