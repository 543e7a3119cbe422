"""The world one attempt's pods form on Kubernetes: one pod per node, each told its node rank and rank 0's address.

Owns: what a part of several nodes adds to the attempt's Job (Indexed completion with one index per node,
parallelism = completions = nodes, a pod failure policy that fails the whole Job on any node's non-zero exit,
the pods spread one per node by required anti-affinity, the pods' `subdomain`), the headless Service that gives
rank 0 a DNS name (`<job>-0.<job>.<namespace>.svc`), every pod's rendezvous variables
(`fedgate.common.rendezvous`) as Kubernetes `$(VAR)` references where only the pod knows the value, the `sh -c`
wrapper that adds a part's first rank to the pod's index, and which pod of a failed Job ended it (and the one
whose log is the attempt's output). It is pure: dicts in, dicts out. It neither talks to the API server
(`agents.backends.kubernetes.objects` does) nor shapes what a one-pod Job has anyway
(`agents.backends.kubernetes.manifest`).

A one-node attempt keeps its plain Job and also gets the variables (its own world, or its place in a gang):
rank `first_rank`, and, when the gateway named no master, the pod's own IP (`status.podIP`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agents.backends.base import LaunchSpec
from fedgate.common import rendezvous

COMPLETION_INDEX = "JOB_COMPLETION_INDEX"
"""The variable the Job controller sets in an Indexed Job's pods. The controller appends its own definition to
the end of the container's env only when the container has none, and `$(VAR)` references see only the variables
defined before them: so the pod defines it first itself, from the same downward API source."""
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
"""The pod annotation (and, from Kubernetes 1.28, label) that holds its completion index."""
POD_IP = "FEDGATE_POD_IP"
"""A one-node attempt's own address (downward API `status.podIP`), its master when the gateway named none."""
DEFAULT_MASTER_PORT = 29500
"""Rank 0's port when the gateway chose none (torch's default)."""
HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"
RANK_WRAPPER = "fedgate-node-rank"
"""$0 of the `sh -c` wrapper (shows in `ps`)."""


def is_multi_node(spec: LaunchSpec) -> bool:
    return len(spec.nodes) > 1


def service_name(job: str) -> str:
    """The headless Service of the attempt whose Job is `job`: the same name (a DNS-1035 label: `fg-...`)."""
    return job


def master_host(job: str, namespace: str) -> str:
    """Rank 0's DNS name: an Indexed Job's pod `i` has hostname `<job>-i`, and its subdomain is the Service."""
    return f"{job}-0.{service_name(job)}.{namespace}.svc"


def pod_environment(spec: LaunchSpec, job: str, namespace: str, base: Mapping[str, str]) -> list[dict[str, Any]]:
    """The container's env: the downward API sources first (so later `$(VAR)` references see them), then `base`
    (the job's env and FEDGATE_* identity) under the node's rendezvous variables, which win, sorted by name."""
    multi = is_multi_node(spec)
    master = master_host(job, namespace) if multi else f"$({POD_IP})"
    values = spec.rendezvous_values(0, master, DEFAULT_MASTER_PORT)
    if multi:
        if spec.rendezvous.first_rank == 0:
            values[rendezvous.NODE_RANK] = f"$({COMPLETION_INDEX})"
        else:
            del values[rendezvous.NODE_RANK]  # no arithmetic in $(VAR): the wrapper (`node_command`) exports it
    sources: list[dict[str, Any]] = []
    if multi:
        sources.append(_downward(COMPLETION_INDEX, f"metadata.annotations['{INDEX_KEY}']"))
    if values[rendezvous.MASTER_ADDR] == master and not multi:
        sources.append(_downward(POD_IP, "status.podIP"))
    env = {name: value for name, value in base.items() if name not in {s["name"] for s in sources}}
    env.update(rendezvous.environment(spec.stack, values))
    return sources + [{"name": name, "value": value} for name, value in sorted(env.items())]


def node_command(spec: LaunchSpec) -> list[str]:
    """The container's command. A part that does not start at rank 0 runs it under `sh -c`, which exports the
    node rank (first rank + completion index) under every name the stack reads; the image needs a POSIX `sh`.
    `$$` is Kubernetes' escape for `$`: the command is expanded for `$(VAR)` before it runs."""
    first = spec.rendezvous.first_rank
    if not is_multi_node(spec) or first == 0:
        return list(spec.command)
    names = sorted(rendezvous.environment(spec.stack, {rendezvous.NODE_RANK: ""}))
    script = f"rank=$$(({COMPLETION_INDEX} + {int(first)})); export {' '.join(f'{n}=$rank' for n in names)}; "
    return ["sh", "-c", script + 'exec "$@"', RANK_WRAPPER, *spec.command]


def indexed_fields(spec: LaunchSpec, container: str) -> dict[str, Any]:
    """The Job spec fields of a multi-node part: one index per node, all running at once, and the first non-zero
    exit of any node fails the Job at once (the controller then ends the other pods). backoffLimit 0, which the
    Job has anyway, does the same for a pod that fails without an exit code (evicted, its node lost)."""
    nodes = len(spec.nodes)
    return {
        "completionMode": "Indexed",
        "completions": nodes,
        "parallelism": nodes,
        "podFailurePolicy": {
            "rules": [
                {"action": "FailJob", "onExitCodes": {"containerName": container, "operator": "NotIn", "values": [0]}}
            ]
        },
    }


def spread(labels: Mapping[str, str]) -> dict[str, Any]:
    """Pod anti-affinity that puts each pod of the attempt (matched by its labels) on a node of its own."""
    term = {"labelSelector": {"matchLabels": dict(labels)}, "topologyKey": HOSTNAME_TOPOLOGY}
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}


def service_manifest(job: str, namespace: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """The headless Service whose DNS names the attempt's pods: no cluster IP, selecting the attempt's pods, and
    publishing them before they are Ready (rank 0 must be reachable while the world forms). It is created before
    the Job (so the names exist when the pods start) and then owned by it (`owner_reference`)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service_name(job), "namespace": namespace, "labels": dict(labels)},
        "spec": {"clusterIP": "None", "selector": dict(labels), "publishNotReadyAddresses": True},
    }


def owner_reference(job: Mapping[str, Any]) -> list[dict[str, str]]:
    """The ownerReferences that make the garbage collector delete an object with the created Job `job`; empty
    when the Job has no uid (the API server always gives one; some test servers do not)."""
    meta = job.get("metadata") or {}
    if not meta.get("uid"):
        return []
    return [{"apiVersion": "batch/v1", "kind": "Job", "name": str(meta["name"]), "uid": str(meta["uid"])}]


def pod_index(pod: Mapping[str, Any]) -> int | None:
    """The pod's completion index (label or annotation), None for a pod of a non-indexed Job."""
    meta = pod.get("metadata") or {}
    for where in (meta.get("labels") or {}, meta.get("annotations") or {}):
        value = str(where.get(INDEX_KEY, ""))
        if value.isdigit():
            return int(value)
    return None


def failing_pod(pods: Sequence[Mapping[str, Any]], container: str) -> Mapping[str, Any] | None:
    """The pod whose failure ended the Job: of the failed pods, the first to finish. Pods the controller was
    deleting (the survivors it ended after the failure) count only when no other pod failed."""
    failed = [pod for pod in pods if _failed(pod, container)]
    if not failed:
        return None
    alive = [pod for pod in failed if not (pod.get("metadata") or {}).get("deletionTimestamp")]
    return min(alive or failed, key=lambda pod: (_finished_at(pod, container), pod_index(pod) or 0))


def first_pod(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The pod whose log is the attempt's output: index 0's (rank 0 of the part), its newest if it was replaced."""
    if not pods:
        return None
    lowest = min(pod_index(pod) or 0 for pod in pods)
    return max(
        (pod for pod in pods if (pod_index(pod) or 0) == lowest),
        key=lambda pod: str((pod.get("metadata") or {}).get("creationTimestamp") or ""),
    )


def node_name(pod: Mapping[str, Any], first_rank: int) -> str:
    """How `ExitStatus.node` names the pod: `node R (pod)`, R its node rank (first rank + completion index)."""
    name = str((pod.get("metadata") or {}).get("name", "?"))
    return f"node {first_rank + (pod_index(pod) or 0)} ({name})"


def _failed(pod: Mapping[str, Any], container: str) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") == "Failed":
        return True
    code = _terminated(pod, container).get("exitCode")
    return isinstance(code, int) and code != 0


def _finished_at(pod: Mapping[str, Any], container: str) -> str:
    """RFC 3339 (UTC, `Z`) compares as text; a pod without one sorts last."""
    return str(_terminated(pod, container).get("finishedAt") or "~")


def _terminated(pod: Mapping[str, Any], container: str) -> Mapping[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            return (status.get("state") or {}).get("terminated") or {}
    return {}


def _downward(name: str, field_path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}
