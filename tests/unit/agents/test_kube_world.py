"""The objects of a multi-node attempt on Kubernetes (pure manifests): an Indexed Job with one pod per node, the
headless Service that names rank 0, the rendezvous variables each pod gets, and which pod a failed Job names."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from typing import Any

import pytest

from agents.backends.base import LaunchSpec
from agents.backends.kubernetes.manifest import Placement, job_labels, job_manifest, job_name, podgroup_manifest
from agents.backends.kubernetes.options import KubernetesOptions
from agents.backends.kubernetes.world import failing_pod, first_pod, node_name, service_manifest
from fedgate.common.rendezvous import Rendezvous

NS = "fedgate-jobs"
OPTIONS = KubernetesOptions(namespace=NS)
GPU = Placement("nvidia.com/gpu", "nvidia.com/gpu.product", ("NVIDIA-H100-80GB-HBM3",))
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def spec(nodes: int = 2, cards: int = 8, world: Rendezvous | None = None, **extra: Any) -> LaunchSpec:
    split = tuple(tuple(range(n * cards, (n + 1) * cards)) for n in range(nodes))
    return LaunchSpec(
        site="site-a",
        job_id="llm-1",
        epoch=2,
        attempt=1,
        accelerator_class="nvidia-h100",
        stack=extra.pop("stack", "cuda"),
        command=("python", "train.py", "--lr", "0.1 0.2"),
        devices=tuple(d for node in split for d in node),
        image="registry.example/train:1",
        node_devices=split if nodes > 1 else (),
        rendezvous=world or Rendezvous.alone(nodes, nodes * cards),
        **extra,
    )


def expand(text: str, defined: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion of env values and commands: `$$` is a `$`, `$(NAME)` the value of a variable
    defined before (left as it is otherwise), any other `$` itself."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i) and ")" in text[i:]:
            end = text.index(")", i)
            name = text[i + 2 : end]
            out.append(defined.get(name, text[i : end + 1]))
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def pod_env(manifest: Mapping[str, Any], downward: Mapping[str, str]) -> dict[str, str]:
    """What the container sees: the env list expanded in order, fieldRefs read from `downward` (by field path)."""
    seen: dict[str, str] = {}
    for entry in manifest["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "valueFrom" in entry:
            seen[entry["name"]] = downward[entry["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            seen[entry["name"]] = expand(entry["value"], seen)
    return seen


INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def test_a_two_node_part_is_an_indexed_job_with_one_pod_per_node() -> None:
    s = spec(nodes=2, cards=8)
    job = job_manifest(s, OPTIONS, GPU)
    name = job_name("site-a", "llm-1", 2)
    assert {k: job["spec"][k] for k in ("completionMode", "completions", "parallelism", "backoffLimit")} == {
        "completionMode": "Indexed",
        "completions": 2,
        "parallelism": 2,
        "backoffLimit": 0,
    }
    assert job["spec"]["podFailurePolicy"] == {
        "rules": [{"action": "FailJob", "onExitCodes": {"containerName": "job", "operator": "NotIn", "values": [0]}}]
    }
    pod = job["spec"]["template"]["spec"]
    assert pod["subdomain"] == name
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "8"}  # each pod its node's cards
    assert pod["affinity"]["podAntiAffinity"] == {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": job_labels(s)}, "topologyKey": "kubernetes.io/hostname"}
        ]
    }
    assert "nodeAffinity" in pod["affinity"]  # the class's product pin stays beside the spread
    assert job["spec"]["template"]["metadata"]["labels"] == job_labels(s)  # what the spread and Service select
    assert pod["containers"][0]["command"] == ["python", "train.py", "--lr", "0.1 0.2"]


@pytest.mark.parametrize("index", [0, 1])
def test_each_pod_is_told_its_rank_and_rank_0s_dns_name(index: int) -> None:
    job = job_manifest(spec(nodes=2, cards=8), OPTIONS, GPU)
    name = job_name("site-a", "llm-1", 2)
    env = pod_env(job, {INDEX_FIELD: str(index)})
    expected = {
        "FEDGATE_NNODES": "2",
        "FEDGATE_NODE_RANK": str(index),
        "FEDGATE_MASTER_ADDR": f"{name}-0.{name}.{NS}.svc",
        "FEDGATE_MASTER_PORT": "29500",
        "FEDGATE_WORLD_SIZE": "16",
        "FEDGATE_NPROC_PER_NODE": "8",
        "FEDGATE_CARDS": "8",
        "NODE_RANK": str(index),
        "PET_NODE_RANK": str(index),
        "MASTER_ADDR": f"{name}-0.{name}.{NS}.svc",
        "NNODES": "2",
    }
    assert {k: env[k] for k in expected} == expected


def test_the_gateways_master_wins_and_the_job_cannot_set_rendezvous_variables() -> None:
    world = Rendezvous(nnodes=4, first_rank=0, world_size=32, master_addr="rdv.centre-a.example", master_port=29517)
    job = job_manifest(spec(nodes=2, world=world, env={"FEDGATE_NNODES": "99", "LR": "1"}), OPTIONS, GPU)
    env = pod_env(job, {INDEX_FIELD: "1"})
    assert (env["FEDGATE_MASTER_ADDR"], env["MASTER_PORT"], env["FEDGATE_NNODES"]) == (
        "rdv.centre-a.example",
        "29517",
        "4",
    )
    assert env["FEDGATE_WORLD_SIZE"] == "32" and env["LR"] == "1"


def test_a_part_after_rank_0_adds_its_first_rank_in_a_shell_wrapper() -> None:
    world = Rendezvous(nnodes=5, first_rank=3, world_size=40, master_addr="10.0.0.5", master_port=29501)
    s = spec(nodes=2, world=world, stack="cann")
    job = job_manifest(s, OPTIONS, GPU)
    env = pod_env(job, {INDEX_FIELD: "1"})
    assert "FEDGATE_NODE_RANK" not in env  # only the wrapper knows it: Kubernetes has no arithmetic
    command = [expand(part, env) for part in job["spec"]["template"]["spec"]["containers"][0]["command"]]
    inner = ["sh", "-c", 'printf "%s|" "$FEDGATE_NODE_RANK" "$NODE_RANK" "$PET_NODE_RANK" "$@"', "x", *s.command]
    printed = [*command[: -len(s.command)], *inner]  # the wrapper then runs this instead of the job's command
    out = subprocess.run(printed, env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=True)
    assert out.stdout == "4|4|4|python|train.py|--lr|0.1 0.2|"  # rank 3 + index 1; arguments kept whole


@pytest.mark.parametrize("nodes", [1, 2])
def test_every_reference_names_a_variable_defined_before_it(nodes: int) -> None:
    job = job_manifest(spec(nodes=nodes), OPTIONS, GPU)
    env = pod_env(job, {INDEX_FIELD: "0", "status.podIP": "10.1.2.3"})
    unresolved = {k: v for k, v in env.items() if "$(" in v}
    assert unresolved == {}


def test_a_one_node_attempt_keeps_its_plain_job_and_gets_its_own_world() -> None:
    job = job_manifest(spec(nodes=1, cards=4), OPTIONS, GPU)
    assert not {"completionMode", "completions", "parallelism", "podFailurePolicy"} & set(job["spec"])
    pod = job["spec"]["template"]["spec"]
    assert "subdomain" not in pod and "podAntiAffinity" not in pod["affinity"]
    env = pod_env(job, {"status.podIP": "10.1.2.3"})
    assert (env["FEDGATE_NNODES"], env["FEDGATE_NODE_RANK"], env["FEDGATE_MASTER_ADDR"]) == ("1", "0", "10.1.2.3")
    assert (env["MASTER_PORT"], env["FEDGATE_WORLD_SIZE"], env["FEDGATE_CARDS"]) == ("29500", "4", "4")


def test_the_headless_service_selects_the_attempts_pods_before_they_are_ready() -> None:
    s = spec()
    name = job_name("site-a", "llm-1", 2)
    service = service_manifest(name, NS, job_labels(s))
    assert service == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS, "labels": job_labels(s)},
        "spec": {"clusterIP": "None", "selector": job_labels(s), "publishNotReadyAddresses": True},
    }


def test_a_volcano_group_needs_every_node_at_once() -> None:
    group = podgroup_manifest(spec(nodes=2, cards=8), KubernetesOptions(namespace=NS, gang="volcano"), GPU)
    assert group["spec"] == {"minMember": 2, "minResources": {"nvidia.com/gpu": "16"}}


def test_the_last_pods_hostname_is_a_dns_label_for_the_largest_parts() -> None:
    name = job_name("site-with-a-long-name", "x" * 300, 99_999)
    assert DNS_LABEL.fullmatch(f"{name}-1023") and len(f"{name}-1023") <= 63  # 1024 nodes, the most a part has


def pod(name: str, index: int, code: int | None, finished: str = "", deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "annotations": {"batch.kubernetes.io/job-completion-index": str(index)}}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:09Z"
    state = {"terminated": {"exitCode": code, "finishedAt": finished}} if code is not None else {"running": {}}
    return {"metadata": meta, "status": {"containerStatuses": [{"name": "job", "state": state}]}}


def test_the_first_pod_to_fail_is_the_one_named() -> None:
    pods = [
        pod("j-0-a", 0, 143, "2025-01-01T00:00:05Z", deleting=True),  # ended by the controller afterwards
        pod("j-2-c", 2, 0, "2025-01-01T00:00:01Z"),
        pod("j-1-b", 1, 3, "2025-01-01T00:00:04Z"),
        pod("j-3-d", 3, None),
    ]
    found = failing_pod(pods, "job")
    assert found is not None and node_name(found, first_rank=4) == "node 5 (j-1-b)"
    assert failing_pod([pods[1], pods[3]], "job") is None


def test_the_output_is_rank_0s_newest_pod() -> None:
    old, new = pod("j-0-a", 0, None), pod("j-0-z", 0, None)
    old["metadata"]["creationTimestamp"], new["metadata"]["creationTimestamp"] = (
        "2025-01-01T00:00:00Z",
        "2025-01-01T00:01:00Z",
    )
    assert first_pod([pod("j-1-b", 1, None), old, new]) is new
    assert first_pod([]) is None
