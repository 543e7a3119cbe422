"""The kubernetes backend's config keys, its Job names and labels, and its error when the client is missing."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agents.backends.base import BackendSettings, LaunchSpec
from agents.backends.kubernetes.backend import KubernetesBackend
from agents.backends.kubernetes.classes import ClassRule
from agents.backends.kubernetes.manifest import Placement, job_name, label_value, podgroup_manifest
from agents.backends.kubernetes.options import KubernetesOptions
from agents.backends.registry import create_backend
from agents.core.config import load_agent_config
from agents.core.model import PoolSpec
from agents.errors import BackendError, ConfigError

from .conftest import POOLS_YAML
from .pki import MintedPki

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@pytest.fixture
def load(pki: MintedPki, tmp_path: Path) -> Callable[[str], BackendSettings]:
    def load(backend: str) -> BackendSettings:
        path = tmp_path / "agent.yaml"
        path.write_text(
            "apiVersion: fedgate.io/v1\nkind: Agent\nsite: centre-a\ngateway: 127.0.0.1:7443\n"
            f"tls: {{ca: {pki.ca}, cert: {pki.site_cert}, key: {pki.site_key}}}\n"
            f"backend:\n{backend}" + POOLS_YAML
        )
        return load_agent_config(path).backend

    return load


def error_of(load: Callable[[str], BackendSettings], backend: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(backend)
    return caught.value.message


def test_all_kubernetes_keys_are_read_into_options(load: Callable[[str], BackendSettings], tmp_path: Path) -> None:
    settings = load(
        "  type: kubernetes\n  namespace: fedgate-jobs\n  kubeconfig: kube/config\n  context: prod\n"
        "  gang: volcano\n  queue: federation\n  service_account: trainer\n  image_pull_secrets: [regcred]\n"
        "  ttl_after_finished_s: 600\n"
        "  resources:\n    - {class: nvidia-h20, resource: nvidia.com/gpu, product_label: nvidia.com/gpu.product,"
        " products: [H20-custom]}\n"
    )
    assert settings.options == KubernetesOptions(
        namespace="fedgate-jobs",
        kubeconfig=tmp_path / "kube" / "config",
        context="prod",
        gang="volcano",
        queue="federation",
        service_account="trainer",
        image_pull_secrets=("regcred",),
        ttl_after_finished_s=600,
        resources=(ClassRule("nvidia-h20", "nvidia.com/gpu", "nvidia.com/gpu.product", ("H20-custom",)),),
    )


@pytest.mark.parametrize(
    ("backend", "problem"),
    [
        ("  type: kubernetes\n", r"agent.yaml:\d+: missing key 'backend.namespace'"),
        ("  type: kubernetes\n  namespace: Fedgate_Jobs\n", r"agent.yaml:8: .*not a valid Kubernetes name"),
        ("  type: kubernetes\n  namespace: ns\n  gang: slurm\n", r"agent.yaml:9: backend.gang must be one of none"),
        ("  type: kubernetes\n  namespace: ns\n  gang: kueue\n", r"agent.yaml:9: .*needs backend.queue"),
        ("  type: kubernetes\n  namespace: ns\n  nmespace: x\n", r"agent.yaml:9: unknown key 'nmespace'"),
        (
            "  type: kubernetes\n  namespace: ns\n  resources:\n    - {class: nvidia-h20, resource: gpu}\n",
            r"agent.yaml:10: resource 'gpu' is not an extended resource name",
        ),
        (
            "  type: kubernetes\n  namespace: ns\n  resources:\n    - {class: x, resource: a.b/c, products: [p]}\n",
            r"agent.yaml:10: products need a product_label",
        ),
    ],
)
def test_bad_kubernetes_options_name_the_file_line_and_fix(
    load: Callable[[str], BackendSettings], backend: str, problem: str
) -> None:
    assert re.search(problem, error_of(load, backend))


def test_a_missing_client_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "kubernetes" or m.startswith(("kubernetes.", "agents.backends.kube"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # import kubernetes now raises ImportError
    settings = BackendSettings("kubernetes", Path("."), KubernetesOptions(namespace="ns"))
    with pytest.raises(ConfigError, match=r"pip install 'fedgate\[kubernetes\]'"):
        create_backend(settings)


def spec(job_id: str, site: str = "centre-a", epoch: int = 1) -> LaunchSpec:
    return LaunchSpec(site, job_id, epoch, 1, "nvidia-h100", "cuda", ("true",), (0,))


@pytest.mark.parametrize("job_id", ["j1", "Job_With/Odd:Chars", "x" * 300, "-", "训练任务"])
def test_job_names_and_label_values_are_valid_and_distinct(job_id: str) -> None:
    name = job_name("centre-a", job_id, 123456789)
    assert DNS_LABEL.match(name) and len(name) <= 63
    value = label_value(job_id)
    assert LABEL_VALUE.match(value) and len(value) <= 63
    assert job_name("centre-b", job_id, 123456789) != name  # two sites sharing a namespace never collide
    assert label_value(job_id + "x") != value


def test_a_valid_label_value_is_kept_as_it_is() -> None:
    assert label_value("job-1.a_b") == "job-1.a_b"


def test_a_podgroup_is_owned_by_its_job_so_it_goes_with_it() -> None:
    options = KubernetesOptions(namespace="ns", gang="volcano")
    owner = {"metadata": {"name": "fg-j1", "uid": "0b7e-uid"}}
    group = podgroup_manifest(spec("j1"), options, Placement("nvidia.com/gpu"), owner=owner)
    assert group["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "fg-j1", "uid": "0b7e-uid"}
    ]
    assert group["spec"] == {"minMember": 1, "minResources": {"nvidia.com/gpu": "1"}}


@pytest.mark.parametrize(
    ("kubeconfig", "problem"),
    [
        (None, r"from the in-cluster service account: .*; set backend.kubeconfig"),
        (Path("/nonexistent/kubeconfig"), r"from kubeconfig /nonexistent/kubeconfig: .*check backend.kubeconfig"),
    ],
)
def test_a_cluster_that_cannot_be_configured_is_a_config_error_with_the_fix(
    kubeconfig: Path | None, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    settings = BackendSettings("kubernetes", Path("."), KubernetesOptions(namespace="ns", kubeconfig=kubeconfig))
    with pytest.raises(ConfigError, match=problem):
        create_backend(settings)


def test_discovery_against_an_api_server_that_does_not_answer_says_so(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "kubeconfig"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    backend = create_backend(BackendSettings("kubernetes", tmp_path, KubernetesOptions("ns", kubeconfig=config)))
    assert isinstance(backend, KubernetesBackend)
    with pytest.raises(BackendError, match="cannot list nodes: the API server did not answer"):
        asyncio.run(backend.discover())  # discovery is where the nodes are listed; pools() does no I/O
    with pytest.raises(BackendError, match=r"await discover\(\) first"):
        backend.pools([PoolSpec("nvidia-h100", 8, 8, 8)])  # nothing was found, so it cannot guess
