"""What the twin's tests share: a small policy (two tenants weighted 3:1, a capped project, three priority
classes with a preemptible one), the catalogue, and short ways to write sites and trace jobs."""

from __future__ import annotations

from pathlib import Path

from gateway.app.config import REPO_POLICIES
from gateway.policy import load_catalogue
from gateway.policy.catalogue import Catalogue
from gateway.simulate.sites import PoolSpec, SiteSpec
from gateway.simulate.trace import TraceJob

H100 = "nvidia-h100"
POLICY = """\
apiVersion: fedgate.io/v1
kind: Federation
metadata: {name: twin}
tenants:
  - name: alpha
    weight: 3
    projects: [{name: train}]
  - name: beta
    weight: 1
    projects: [{name: tune}]
  - name: capped
    projects: [{name: small, quota: {concurrent_cards: {"*": 4}}}]
priority_classes:
  - {name: high, priority: 100}
  - {name: normal, priority: 50, default: true}
  - {name: low, priority: 10, preemptible: true, grace_period_s: 5}
"""


def write_policy(folder: Path) -> Path:
    path = folder / "federation.yaml"
    path.write_text(POLICY)
    return path


def catalogue() -> Catalogue:
    return load_catalogue(REPO_POLICIES / "accelerators.yaml")


def site(name: str, cards: int, per_node: int = 8, cls: str = H100) -> SiteSpec:
    return SiteSpec(name, "", (PoolSpec(cls, cards, per_node),))


def job(job_id: str, submit: float, duration: float, cards: int, home: str = "a", **more: object) -> TraceJob:
    return TraceJob(job_id, submit, duration, cards, H100, home, **more)  # type: ignore[arg-type]
