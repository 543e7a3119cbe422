"""Rendering the charts in helm/ in-process with Helm's own engine (helm-python-sdk binds Helm v4's Go SDK
through ctypes: no helm binary), and validating what they render against Kubernetes' schemas.

Owns: the list of charts and their example values files, `render` (values file -> parsed manifests) and
`validate` (one manifest against KUBE_VERSION). Custom resources (the Prometheus Operator's ServiceMonitor) have
no schema in kubernetes-validate; they are named in CUSTOM and checked by the tests that make them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "helm"
GATEWAY = CHARTS / "fedgate-gateway"
AGENT = CHARTS / "fedgate-agent"
# The oldest Kubernetes the charts claim (Chart.yaml kubeVersion >= 1.27: grpc-era probes, PDB
# unhealthyPodEvictionPolicy) is validated, and the newest kubernetes-validate knows.
KUBE_VERSIONS = ("1.27.0", kubernetes_validate.utils.latest_version())
CUSTOM = {("monitoring.coreos.com/v1", "ServiceMonitor")}
RELEASE, NAMESPACE = "fg", "fedgate-system"

Manifest = dict[str, Any]


def examples(chart: Path) -> list[Path]:
    return sorted((chart / "examples").glob("*.yaml"))


def values_of(path: Path | None) -> dict[str, Any]:
    return {} if path is None else helm.values_from_yaml(path.read_text())


def render(chart: Path, values: dict[str, Any] | None = None) -> dict[str, list[Manifest]]:
    """Template path -> the manifests it rendered (NOTES.txt left out)."""
    with helm.Chart.load(chart) as loaded:
        rendered = loaded.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return {
        path: [doc for doc in yaml.safe_load_all(text) if doc]
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
    }


def manifests(chart: Path, values: dict[str, Any] | None = None) -> list[Manifest]:
    return [doc for docs in render(chart, values).values() for doc in docs]


def by_kind(docs: list[Manifest], kind: str) -> list[Manifest]:
    return [doc for doc in docs if doc["kind"] == kind]


def validate(manifest: Manifest, version: str) -> None:
    """Raise kubernetes_validate.ValidationError when `manifest` breaks the schema (strict: no unknown fields)."""
    if (manifest["apiVersion"], manifest["kind"]) in CUSTOM:
        return
    kubernetes_validate.validate(manifest, version, strict=True)
