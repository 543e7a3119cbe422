"""The `kubernetes` backend's options: the keys of the agent config's `backend:` section, validated.

Owns: `KubernetesOptions` and reading it from YAML with errors that name the file and line. It does not
import the Kubernetes client (the registry reads options even where the client is not installed, e.g. to
check a config) and does not talk to any cluster.

    backend:
      type: kubernetes
      namespace: fedgate-jobs            # where Jobs are created (required)
      kubeconfig: ~/.kube/config         # absent: in-cluster service account
      context: prod                      # a kubeconfig context; absent: its current one
      gang: volcano                      # none | volcano | kueue
      queue: federation                  # Volcano queue / Kueue LocalQueue (required with kueue)
      service_account: fedgate-job
      image_pull_secrets: [registry-cred]
      ttl_after_finished_s: 86400        # finished Jobs are kept this long for their logs; 0 = forever
      resources:                         # replace the built-in rules for these classes
        - {class: ascend-910b, resource: huawei.com/Ascend910, product_label: node.kubernetes.io/npu.chip.name}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from agents.backends.kubernetes.classes import ClassRule
from fedgate.common.sections import Section

GANGS = ("none", "volcano", "kueue")

# DNS-1123 label (namespaces, queue names) and subdomain (service accounts, secrets).
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_RESOURCE = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_CLASS_ID = re.compile(r"[a-z0-9][a-z0-9-]*")


@dataclass(frozen=True)
class KubernetesOptions:
    """How the agent reaches its cluster and shapes the Jobs it creates there."""

    namespace: str
    """Namespace of every Job (and PodGroup) the agent creates."""
    kubeconfig: Path | None = None
    """kubeconfig file (absolute); None = the in-cluster service account of the agent's pod."""
    context: str = ""
    """kubeconfig context; empty = the file's current context."""
    gang: str = "none"
    """none: plain Jobs; volcano: schedulerName volcano plus a PodGroup; kueue: a suspended Job in `queue`."""
    queue: str = ""
    """Volcano queue (optional) or Kueue LocalQueue (required with kueue)."""
    service_account: str = ""
    """Service account of the job pods; empty = the namespace's default."""
    image_pull_secrets: tuple[str, ...] = ()
    ttl_after_finished_s: int = 86_400
    """Seconds a finished Job (and its pod's log) is kept; 0 = until the operator deletes it."""
    resources: tuple[ClassRule, ...] = ()
    """Operator rules; each replaces the built-in rules of its class."""


def read_kubernetes_options(section: Section, base: Path) -> KubernetesOptions:
    """Read the `backend:` keys of type kubernetes; relative kubeconfig paths start at the config's folder."""
    namespace = _name(section, "namespace", _LABEL, required=True)
    kubeconfig: Path | None = None
    if section.has("kubeconfig"):
        path = Path(section.text("kubeconfig")).expanduser()
        kubeconfig = path if path.is_absolute() else (base / path)
    gang = section.text("gang", "none")
    if gang not in GANGS:
        section.fail(f"backend.gang must be one of {', '.join(GANGS)}, got {gang!r}", "gang")
    queue = _name(section, "queue", _LABEL)
    if gang == "kueue" and not queue:
        section.fail("backend.gang kueue needs backend.queue, the name of a Kueue LocalQueue in the namespace", "gang")
    secrets = section.strings("image_pull_secrets")
    for i, secret in enumerate(secrets):
        if not _SUBDOMAIN.fullmatch(secret):
            section.fail_item("image_pull_secrets", i, f"image pull secret {secret!r} is not a valid Secret name")
    return KubernetesOptions(
        namespace=namespace,
        kubeconfig=kubeconfig,
        context=section.text("context", ""),
        gang=gang,
        queue=queue,
        service_account=_name(section, "service_account", _SUBDOMAIN),
        image_pull_secrets=secrets,
        ttl_after_finished_s=section.integer("ttl_after_finished_s", 86_400, minimum=0),
        resources=_rules(section) if section.has("resources") else (),
    )


def _name(section: Section, key: str, pattern: re.Pattern[str], *, required: bool = False) -> str:
    value = section.text(key) if required else section.text(key, "")
    if value and not pattern.fullmatch(value):
        section.fail(
            f"backend.{key} {value!r} is not a valid Kubernetes name (lower-case letters, digits and '-')", key
        )
    return value


def _rules(section: Section) -> tuple[ClassRule, ...]:
    rules: list[ClassRule] = []
    for item in section.sections("resources"):
        name = item.text("class")
        if not _CLASS_ID.fullmatch(name):
            item.fail(f"class {name!r} is not a catalogue id like 'ascend-910b'", "class")
        resource = item.text("resource")
        if not _RESOURCE.fullmatch(resource):
            item.fail(f"resource {resource!r} is not an extended resource name like 'nvidia.com/gpu'", "resource")
        label = item.text("product_label", "")
        if label and not _LABEL_KEY.fullmatch(label):
            item.fail(f"product_label {label!r} is not a node label key like 'nvidia.com/gpu.product'", "product_label")
        products = item.strings("products")
        if products and not label:
            item.fail("products need a product_label: the node label whose value names the product", "products")
        item.finish()
        rules.append(ClassRule(name, resource, label, products))
    return tuple(rules)
