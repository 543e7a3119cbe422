"""The Kubernetes objects one attempt becomes: a batch/v1 Job and, with Volcano, its PodGroup.

Owns: the Job's name and labels (values made valid label syntax), its pod template (image, command,
environment, the class's extended resource per pod, node affinity to the class's product label), the gang
variants (Volcano: schedulerName and a PodGroup of every pod; Kueue: queue label and a suspended Job, which Kueue
admits whole: all its pods or none), and reading a finished Job's outcome back. What a part of several nodes
adds (an Indexed Job, one pod per node, the headless Service, the rendezvous variables) is
`agents.backends.kubernetes.world`'s. It is pure: dicts in, dicts out. It does not talk to the API server and
does not check that the cluster has the class (`agents.backends.kubernetes.backend` does).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agents.backends.base import ExitStatus, LaunchSpec
from agents.backends.kubernetes.options import KubernetesOptions
from agents.backends.kubernetes.world import (
    indexed_fields,
    is_multi_node,
    node_command,
    owner_reference,
    pod_environment,
    service_name,
    spread,
)

LABEL_JOB_ID = "fedgate.io/job-id"
LABEL_EPOCH = "fedgate.io/epoch"
LABEL_SITE = "fedgate.io/site"
# Labels are limited to 63 characters of a small alphabet; the exact values live in annotations.
ANNOTATION_JOB_ID = "fedgate.io/job-id"
ANNOTATION_SITE = "fedgate.io/site"
VOLCANO_GROUP_ANNOTATION = "scheduling.k8s.io/group-name"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
CONTAINER = "job"
DEADLINE_MARGIN_S = 60.0
"""activeDeadlineSeconds is the job's max runtime plus this."""

_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


@dataclass(frozen=True)
class Placement:
    """Where on the cluster the class lives, from discovery."""

    resource: str
    """Extended resource to put in the container's limits, e.g. `nvidia.com/gpu`."""
    product_label: str = ""
    products: tuple[str, ...] = ()
    """Pin pods to nodes whose product label is one of these (empty = no pin)."""
    avoid_products: tuple[str, ...] = ()
    """Keep pods off nodes whose product label is one of these (other classes sharing the resource)."""


def label_value(value: str) -> str:
    """`value` if it is a valid label value, else a valid one derived from it with a hash that keeps it unique."""
    if len(value) <= 63 and _LABEL_VALUE.fullmatch(value):
        return value
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:54].strip("-_.")
    return f"{cleaned}-{_digest(value)}" if cleaned else _digest(value)


def job_name(site: str, job_id: str, epoch: int) -> str:
    """A DNS-1123 name unique per (site, job, epoch): readable prefix, hash for uniqueness, epoch last."""
    slug = re.sub(r"[^a-z0-9]+", "-", job_id.lower()).strip("-")[:36].strip("-") or "job"
    return f"fg-{slug}-{_digest(site + '/' + job_id)}-e{epoch}"


def job_labels(spec: LaunchSpec) -> dict[str, str]:
    return {
        LABEL_JOB_ID: label_value(spec.job_id),
        LABEL_EPOCH: str(spec.epoch),
        LABEL_SITE: label_value(spec.site),
    }


def job_environment(spec: LaunchSpec) -> dict[str, str]:
    """The job's env, then ours. The agent's own environment is never copied into a pod."""
    env = spec.job_environment()
    # The device plugin picks the physical cards; only their number is meaningful inside the pod.
    env["FEDGATE_CARDS"] = str(pod_cards(spec))
    return env


def pod_cards(spec: LaunchSpec) -> int:
    """Cards of each pod: its node's (every node of a multi-node part is whole, so all have the same)."""
    return len(spec.nodes[0])


def job_manifest(spec: LaunchSpec, options: KubernetesOptions, placement: Placement) -> dict[str, Any]:
    """The batch/v1 Job for one attempt: one pod per node, never retried (the gateway decides on new attempts)."""
    name = job_name(spec.site, spec.job_id, spec.epoch)
    labels = job_labels(spec)
    multi = is_multi_node(spec)
    job_labels_ = dict(labels)
    pod_annotations: dict[str, str] = {}
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": CONTAINER,
                "image": spec.image,
                "command": node_command(spec),
                "env": pod_environment(spec, name, options.namespace, job_environment(spec)),
                "resources": {"limits": {placement.resource: str(pod_cards(spec))}},
            }
        ],
    }
    # Accelerator nodes are often tainted with their resource's name so that only pods asking for it land
    # there (what the ExtendedResourceToleration admission plugin adds, where it is enabled).
    pod["tolerations"] = [{"key": placement.resource, "operator": "Exists", "effect": "NoSchedule"}]
    affinity = _node_affinity(placement) or {}
    if multi:
        affinity.update(spread(labels))
        pod["subdomain"] = service_name(name)  # with the Job's pod hostnames <job>-<index>: a DNS name per pod
    if affinity:
        pod["affinity"] = affinity
    if options.service_account:
        pod["serviceAccountName"] = options.service_account
    if options.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": secret} for secret in options.image_pull_secrets]
    job_spec: dict[str, Any] = {"backoffLimit": 0}
    if multi:
        job_spec.update(indexed_fields(spec, CONTAINER))
    if spec.max_runtime_s > 0:
        # A backstop for when the agent is away. The agent itself stops the attempt at the limit (and reports
        # why); the margin keeps the cluster from racing it to the kill.
        job_spec["activeDeadlineSeconds"] = math.ceil(spec.max_runtime_s + DEADLINE_MARGIN_S)
    if options.ttl_after_finished_s:
        job_spec["ttlSecondsAfterFinished"] = options.ttl_after_finished_s
    if options.gang == "volcano":
        pod["schedulerName"] = "volcano"
        pod_annotations[VOLCANO_GROUP_ANNOTATION] = name
    elif options.gang == "kueue":
        job_labels_[KUEUE_QUEUE_LABEL] = options.queue
        job_spec["suspend"] = True  # Kueue admits the Job by unsuspending it
    template_meta: dict[str, Any] = {"labels": labels}
    if pod_annotations:
        template_meta["annotations"] = pod_annotations
    job_spec["template"] = {"metadata": template_meta, "spec": pod}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": options.namespace,
            "labels": job_labels_,
            "annotations": {ANNOTATION_JOB_ID: spec.job_id, ANNOTATION_SITE: spec.site},
        },
        "spec": job_spec,
    }


def podgroup_manifest(
    spec: LaunchSpec, options: KubernetesOptions, placement: Placement, owner: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Volcano's PodGroup for the Job's pods (one per node): scheduled all together or not at all. With the
    created Job as `owner` (when it has a uid), the garbage collector deletes the group with the Job."""
    body: dict[str, Any] = {
        "minMember": len(spec.nodes),
        "minResources": {placement.resource: str(pod_cards(spec) * len(spec.nodes))},
    }
    if options.queue:
        body["queue"] = options.queue
    metadata: dict[str, Any] = {
        "name": job_name(spec.site, spec.job_id, spec.epoch),
        "namespace": options.namespace,
        "labels": job_labels(spec),
    }
    owners = owner_reference(owner or {})
    if owners:
        metadata["ownerReferences"] = owners
    return {"apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "PodGroup", "metadata": metadata, "spec": body}


def is_ours(job: Mapping[str, Any], site: str, job_id: str | None = None, epoch: int | None = None) -> bool:
    """Whether a listed Job is this site's (and this attempt's); label selectors are not trusted alone."""
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    if annotations.get(ANNOTATION_SITE) != site or labels.get(LABEL_SITE) != label_value(site):
        return False
    if job_id is not None and annotations.get(ANNOTATION_JOB_ID) != job_id:
        return False
    return epoch is None or labels.get(LABEL_EPOCH) == str(epoch)


def job_outcome(job: Mapping[str, Any]) -> bool | None:
    """True when the Job succeeded, False when it failed, None while it is still going."""
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return True
        if condition.get("type") == "Failed":
            return False
    return None


def exit_status_of(succeeded: bool, pod: Mapping[str, Any] | None) -> ExitStatus:
    """The attempt's exit status: the container's own exit code when its pod says, else 0 or 1."""
    if succeeded:
        return ExitStatus(exit_code=0)
    for container in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if container.get("name") != CONTAINER:
            continue
        terminated = (container.get("state") or {}).get("terminated") or {}
        code = terminated.get("exitCode")
        if isinstance(code, int):
            signal_number = terminated.get("signal") or (code - 128 if 128 < code < 160 else 0)
            return ExitStatus(exit_code=code, signal_number=int(signal_number))
    return ExitStatus(exit_code=1)


def _node_affinity(placement: Placement) -> dict[str, Any] | None:
    if not placement.product_label or not (placement.products or placement.avoid_products):
        return None
    if placement.products:
        expression = {"key": placement.product_label, "operator": "In", "values": sorted(placement.products)}
    else:
        expression = {"key": placement.product_label, "operator": "NotIn", "values": sorted(placement.avoid_products)}
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [expression]}]
            }
        }
    }


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]
