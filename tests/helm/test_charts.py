"""Both charts load, lint clean, render their defaults and every example values file with Helm's engine, and
every manifest they render is valid Kubernetes (strict schemas) for the versions the charts claim."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from tests.helm.charts import AGENT, GATEWAY, KUBE_VERSIONS, examples, manifests, validate, values_of

CHARTS = (GATEWAY, AGENT)
CASES = [(chart, None) for chart in CHARTS] + [(chart, example) for chart in CHARTS for example in examples(chart)]


def case_id(case: Any) -> str:
    return case.name if isinstance(case, Path) and case.suffix == ".yaml" else getattr(case, "name", "defaults")


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.name)
def test_each_chart_has_a_schema_and_examples(chart: Path) -> None:
    with helm.Chart.load(chart) as loaded:
        assert loaded.schema is not None
        image = loaded.values["image"]
    assert (image["repository"], image["tag"]) == ("ghcr.io/fedgate/fedgate", "")  # the tag: the chart's appVersion
    assert examples(chart), f"{chart.name} has no examples/*.yaml"


@pytest.mark.parametrize(("chart", "example"), CASES, ids=lambda c: case_id(c) if c is not None else "defaults")
def test_lint_finds_no_error_or_warning(chart: Path, example: Path | None) -> None:
    report = helm.lint(chart, values_of(example), strict=True, kube_version=f"v{KUBE_VERSIONS[0]}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize(("chart", "example"), CASES, ids=lambda c: case_id(c) if c is not None else "defaults")
def test_every_rendered_manifest_is_valid_kubernetes(chart: Path, example: Path | None) -> None:
    values = values_of(example)
    with helm.Chart.load(chart) as loaded:
        loaded.validate_schema(loaded.merge_values(values))
    docs = manifests(chart, values)
    assert docs
    for version in KUBE_VERSIONS:
        for doc in docs:
            validate(doc, version)


def test_validation_can_fail() -> None:
    docs = manifests(GATEWAY)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpcc"] = {"port": 7444}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment, KUBE_VERSIONS[0])


@pytest.mark.parametrize(
    ("chart", "bad"),
    [
        (GATEWAY, {"replicas": 3}),  # several gateways on SQLite
        (GATEWAY, {"store": {"type": "postgresql"}}),  # PostgreSQL without the Secret of its URL
        (GATEWAY, {"store": {"type": "mysql"}}),
        (GATEWAY, {"ports": {"mtls": 70000}}),
        (GATEWAY, {"config": {"site_lease": 30}}),  # a typo of site_lease_s
        (GATEWAY, {"replica": 2}),
        (AGENT, {"enrollment": {"enabled": True}}),  # no CA fingerprint to pin
        (AGENT, {"enrollment": {"enabled": True, "caFingerprint": "ab" * 32}}),  # and a Secret's credentials too
        (AGENT, {"enrollment": {"caFingerprint": "not-a-fingerprint"}}),
        (AGENT, {"gateway": ["gw.example.org"]}),  # no port
        (AGENT, {"site": "Centre_A"}),
        (AGENT, {"backend": {"type": "slurm"}}),
    ],
    ids=repr,
)
def test_the_schema_refuses_a_bad_value(chart: Path, bad: dict[str, Any]) -> None:
    with helm.Chart.load(chart) as loaded:
        with pytest.raises(helm.HelmValuesError):
            loaded.validate_schema(loaded.merge_values(bad))
        with pytest.raises(helm.HelmValuesError):  # an install renders with the same check
            loaded.render(bad, name="fg", namespace="fedgate-system")
