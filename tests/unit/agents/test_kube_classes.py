"""Kubernetes node discovery: the class table agrees with the catalogue, and nodes become per-class capacity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.backends.kubernetes.classes import DEFAULT_RULES, ClassRule, classify, discover, lower_pools, merge_rules
from agents.core.model import PoolSpec

CATALOGUE = Path(__file__).resolve().parents[3] / "policies" / "accelerators.yaml"


def catalogue() -> list[dict[str, Any]]:
    return list(yaml.safe_load(CATALOGUE.read_text())["accelerators"])


def node(resource: str, cards: Any, labels: dict[str, str] | None = None, *, ready: str = "True") -> dict[str, Any]:
    return {
        "metadata": {"name": "n", "labels": labels or {}},
        "status": {"allocatable": {"cpu": "64", resource: cards}, "conditions": [{"type": "Ready", "status": ready}]},
    }


@pytest.mark.parametrize("entry", [e for e in catalogue() if e.get("kubernetes")], ids=lambda e: e["id"])
def test_every_catalogue_class_with_a_kubernetes_resource_has_an_agreeing_rule(entry: dict[str, Any]) -> None:
    wanted = entry["kubernetes"]
    rules = [r for r in DEFAULT_RULES if r.accelerator_class == entry["id"] and r.resource == wanted["resource"]]
    assert len(rules) == 1, f"{entry['id']}: no rule for {wanted['resource']}"
    rule = rules[0]
    assert set(rule.products) == set(wanted.get("products") or [])
    if wanted.get("product_label"):
        assert rule.product_label == wanted["product_label"]


def test_every_rule_names_a_catalogue_class() -> None:
    known = {entry["id"] for entry in catalogue()}
    assert {rule.accelerator_class for rule in DEFAULT_RULES} <= known


@pytest.mark.parametrize(
    ("resource", "labels", "expected"),
    [
        ("nvidia.com/gpu", {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, "nvidia-h100"),
        ("nvidia.com/gpu", {"nvidia.com/gpu.product": "NVIDIA-H20"}, "nvidia-h20"),
        ("nvidia.com/gpu", {"nvidia.com/gpu.product": "nvidia-a800-sxm4-80gb"}, "nvidia-a800"),
        ("nvidia.com/gpu", {"nvidia.com/gpu.product": "NVIDIA-GeForce-RTX-4090"}, None),
        ("nvidia.com/gpu", {}, None),
        ("huawei.com/Ascend910", {"node.kubernetes.io/npu.chip.name": "910B3"}, "ascend-910b"),
        ("huawei.com/Ascend910", {}, "ascend-910b"),
        ("huawei.com/Ascend910", {"node.kubernetes.io/npu.chip.name": "Ascend910C"}, "ascend-910c"),
        ("huawei.com/Ascend910B", {}, "ascend-910b"),
        ("hygon.com/dcu", {}, "hygon-k100"),
        ("cambricon.com/mlu", {}, "cambricon-mlu590"),
        ("example.com/fpga", {}, None),
    ],
)
def test_a_resource_and_its_product_label_name_one_class(
    resource: str, labels: dict[str, str], expected: str | None
) -> None:
    rule = classify(resource, labels, DEFAULT_RULES)
    assert (rule.accelerator_class if rule else None) == expected


def test_operator_rules_replace_the_defaults_of_their_class() -> None:
    mine = ClassRule("nvidia-h20", "nvidia.com/gpu", "example.com/model", ("h20-custom",))
    rules = merge_rules(DEFAULT_RULES, [mine])
    assert [r for r in rules if r.accelerator_class == "nvidia-h20"] == [mine]
    rule = classify("nvidia.com/gpu", {"example.com/model": "h20-custom"}, rules)
    assert rule is mine
    assert classify("nvidia.com/gpu", {"nvidia.com/gpu.product": "NVIDIA-H20"}, rules) is None


def test_discovery_sums_cards_and_keeps_the_largest_node_skipping_unready_and_cordoned() -> None:
    h100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    cordoned = node("nvidia.com/gpu", "8", h100) | {"spec": {"unschedulable": True}}
    found = discover(
        [
            node("nvidia.com/gpu", "8", h100),
            node("nvidia.com/gpu", "4", h100),
            node("nvidia.com/gpu", "8", h100, ready="Unknown"),
            cordoned,
            node("nvidia.com/gpu", "0", h100),
            node("huawei.com/Ascend910", "16", {"node.kubernetes.io/npu.chip.name": "Ascend910C"}),
        ],
        DEFAULT_RULES,
    )
    assert set(found) == {"nvidia-h100", "ascend-910c"}
    assert (found["nvidia-h100"].total, found["nvidia-h100"].largest_node, found["nvidia-h100"].nodes) == (12, 8, 2)
    assert found["nvidia-h100"].products_seen == {"NVIDIA-H100-80GB-HBM3"}
    assert found["ascend-910c"].total == 16


def test_declared_pools_are_only_ever_lowered() -> None:
    found = discover([node("nvidia.com/gpu", "8", {"nvidia.com/gpu.product": "NVIDIA-H20"})], DEFAULT_RULES)
    declared = [
        PoolSpec("nvidia-h20", cards=4, offered=2, cards_per_node=4),  # smaller than the cluster: kept
        PoolSpec("nvidia-h100", cards=8, offered=8, cards_per_node=8),  # not on the cluster: dropped
    ]
    assert lower_pools(declared, found) == [declared[0]]
    big = [PoolSpec("nvidia-h20", cards=32, offered=24, cards_per_node=16, labels={"zone": "a"})]
    assert lower_pools(big, found) == [
        PoolSpec("nvidia-h20", cards=8, offered=8, cards_per_node=8, labels={"zone": "a"})
    ]
