"""Which canonical accelerator class a Kubernetes node's extended resources reveal, and how many cards.

Owns: the rules that map an extended resource (`nvidia.com/gpu`, `huawei.com/Ascend910`, ...) plus an optional
product label on the node (`nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3`) to a catalogue class id, the default
table of those rules (kept in agreement with `policies/accelerators.yaml` by a unit test), turning a node list
into per-class capacity, and lowering the operator's declared pools to what the cluster really has.
It is pure: it never talks to the API server (`agents.backends.kubernetes.api` does) and never decides what a job
gets (the runtime does).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agents.core.model import PoolSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassRule:
    """One way a class shows itself on a node."""

    accelerator_class: str
    """Catalogue id, e.g. `nvidia-h100`."""
    resource: str
    """The extended resource in the node's allocatable, e.g. `nvidia.com/gpu`."""
    product_label: str = ""
    """Node label naming the product, when several classes share the resource; empty = not used."""
    products: tuple[str, ...] = ()
    """Label values (compared case-insensitively) that mean this class. Empty = the class the resource means
    when no other rule's product matches (e.g. `huawei.com/Ascend910` without a 910C chip label is a 910B).
    Without a product label they only record the catalogue's product names: a resource that one class alone
    uses needs no label."""


# The scheduler names from policies/accelerators.yaml (tests/unit/agents/test_kube_classes.py checks that they
# agree). The Ascend device plugin labels nodes with their chip (`node.kubernetes.io/npu.chip.name=910B3`,
# `Ascend910C`); the catalogue gives no label for Ascend, so that label is the one used here.
_NVIDIA = ("nvidia.com/gpu", "nvidia.com/gpu.product")
_ASCEND = ("huawei.com/Ascend910", "node.kubernetes.io/npu.chip.name")

DEFAULT_RULES: tuple[ClassRule, ...] = (
    ClassRule("nvidia-h100", *_NVIDIA, ("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-SXM5-80GB")),
    ClassRule("nvidia-h200", *_NVIDIA, ("NVIDIA-H200", "NVIDIA-H200-141GB-HBM3e")),
    ClassRule("nvidia-h20", *_NVIDIA, ("NVIDIA-H20",)),
    ClassRule("nvidia-a100", *_NVIDIA, ("NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe")),
    ClassRule("nvidia-a800", *_NVIDIA, ("NVIDIA-A800-SXM4-80GB", "NVIDIA-A800-80GB-PCIe")),
    ClassRule("nvidia-l20", *_NVIDIA, ("NVIDIA-L20",)),
    ClassRule("ascend-910b", *_ASCEND),
    ClassRule("ascend-910c", *_ASCEND, ("Ascend910C",)),
    # Some Ascend device plugin versions name the 910B's resource after it.
    ClassRule("ascend-910b", "huawei.com/Ascend910B"),
    ClassRule("hygon-k100", "hygon.com/dcu", "", ("K100", "K100_AI")),
    ClassRule("cambricon-mlu590", "cambricon.com/mlu", "", ("MLU590",)),
    ClassRule("kunlunxin-p800", "kunlunxin.com/xpu", "", ("P800",)),
    ClassRule("mthreads-s4000", "mthreads.com/gpu", "", ("MTT-S4000",)),
    ClassRule("metax-c500", "metax-tech.com/gpu", "", ("C500",)),
    ClassRule("iluvatar-bi-v150", "iluvatar.ai/gpu", "", ("BI-V150",)),
    ClassRule("enflame-s60", "enflame.com/gcu", "", ("S60",)),
)


def merge_rules(defaults: Sequence[ClassRule], overrides: Sequence[ClassRule]) -> tuple[ClassRule, ...]:
    """The operator's rules replace every default rule of the same class, and come first."""
    replaced = {rule.accelerator_class for rule in overrides}
    return (*overrides, *(rule for rule in defaults if rule.accelerator_class not in replaced))


def classify(resource: str, labels: Mapping[str, str], rules: Sequence[ClassRule]) -> ClassRule | None:
    """The rule that says which class `resource` is on a node with `labels`, or None if unknown.

    A rule whose product label carries one of its products wins; else the one rule of the resource without
    products; else, when only one rule names the resource at all, that rule (a vendor with one class needs
    no label). An NVIDIA GPU whose product is not in the table is unknown: guessing would mislabel cards.
    """
    candidates = [rule for rule in rules if rule.resource == resource]
    for rule in candidates:
        if rule.product_label and rule.products:
            value = labels.get(rule.product_label, "").lower()
            if value and value in {p.lower() for p in rule.products}:
                return rule
    fallbacks = [rule for rule in candidates if not rule.products]
    if len(fallbacks) == 1:
        return fallbacks[0]
    if len({rule.accelerator_class for rule in candidates}) == 1:
        return candidates[0]
    return None


@dataclass
class ClassCapacity:
    """What the schedulable nodes of the cluster have of one class."""

    accelerator_class: str
    resource: str
    total: int = 0
    """Cards over all schedulable nodes."""
    largest_node: int = 0
    """The most cards of this class on any one node: the largest single-pod job."""
    product_label: str = ""
    products_seen: set[str] = field(default_factory=set)
    """Values of the product label on these nodes; pods are pinned to them."""
    unlabelled_nodes: int = 0
    """Nodes of this class without the product label (then pods are kept off other classes' products)."""
    nodes: int = 0


def discover(nodes: Iterable[Mapping[str, Any]], rules: Sequence[ClassRule]) -> dict[str, ClassCapacity]:
    """Per-class capacity of the schedulable, Ready nodes among `nodes` (raw API objects, as dicts)."""
    found: dict[str, ClassCapacity] = {}
    for node in nodes:
        name = node.get("metadata", {}).get("name", "?")
        if not is_schedulable(node):
            log.debug("node %s is unschedulable or not Ready: not counted", name)
            continue
        labels = node.get("metadata", {}).get("labels") or {}
        allocatable = node.get("status", {}).get("allocatable") or {}
        for resource, quantity in allocatable.items():
            if "/" not in resource or resource.startswith(("kubernetes.io/", "hugepages-")):
                continue
            cards = _whole_cards(quantity)
            if cards <= 0:
                continue
            rule = classify(resource, labels, rules)
            if rule is None:
                if any(r.resource == resource for r in rules):
                    log.warning("node %s: %d %s of an unknown product; add a `resources:` rule", name, cards, resource)
                continue
            capacity = found.setdefault(rule.accelerator_class, ClassCapacity(rule.accelerator_class, resource))
            capacity.total += cards
            capacity.largest_node = max(capacity.largest_node, cards)
            capacity.nodes += 1
            capacity.product_label = rule.product_label
            value = labels.get(rule.product_label, "") if rule.product_label else ""
            if value:
                capacity.products_seen.add(value)
            else:
                capacity.unlabelled_nodes += 1
    return found


def is_schedulable(node: Mapping[str, Any]) -> bool:
    """Not cordoned and Ready=True: a pod could be placed there now."""
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def lower_pools(declared: Sequence[PoolSpec], found: Mapping[str, ClassCapacity]) -> list[PoolSpec]:
    """The declared pools, each lowered to what the cluster has; a class the cluster lacks is dropped."""
    pools: list[PoolSpec] = []
    for pool in declared:
        capacity = found.get(pool.accelerator_class)
        if capacity is None or capacity.total == 0:
            log.warning("pool %s: no schedulable node has this class; it is not offered", pool.accelerator_class)
            continue
        cards = min(pool.cards, capacity.total)
        lowered = replace(
            pool,
            cards=cards,
            offered=min(pool.offered, cards),
            cards_per_node=min(pool.cards_per_node, capacity.largest_node),
        )
        if lowered != pool:
            log.info(
                "pool %s: the cluster has %d cards (at most %d per node); offering %d of %d",
                pool.accelerator_class,
                capacity.total,
                capacity.largest_node,
                lowered.offered,
                lowered.cards,
            )
        pools.append(lowered)
    return pools


def _whole_cards(quantity: Any) -> int:
    """Extended resources are whole numbers ("8"); anything else counts as none."""
    try:
        return int(str(quantity))
    except ValueError:
        return 0
