"""The RBAC the docs hand to operators grants exactly the API calls the kubernetes backend makes."""

from __future__ import annotations

from pathlib import Path

import yaml

from agents.backends.kubernetes.api import API_PERMISSIONS

ROLE = Path(__file__).resolve().parents[3] / "docs" / "rbac" / "agent-role.yaml"
CLUSTER_SCOPED = {("", "nodes")}


def granted() -> dict[str, set[tuple[str, str, str]]]:
    """(group, resource, verb) per kind of role in the YAML."""
    grants: dict[str, set[tuple[str, str, str]]] = {"Role": set(), "ClusterRole": set()}
    for document in yaml.safe_load_all(ROLE.read_text()):
        if document["kind"] not in grants:
            continue
        for rule in document["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        grants[document["kind"]].add((group, resource, verb))
    return grants


def test_the_role_grants_every_call_the_backend_makes_and_nothing_more() -> None:
    grants = granted()
    assert grants["Role"] | grants["ClusterRole"] == API_PERMISSIONS


def test_only_cluster_scoped_resources_are_in_the_cluster_role() -> None:
    grants = granted()
    assert {(g, r) for g, r, _ in grants["ClusterRole"]} == CLUSTER_SCOPED
    assert not {(g, r) for g, r, _ in grants["Role"]} & CLUSTER_SCOPED


def test_role_bindings_point_at_the_roles_defined_beside_them() -> None:
    documents = list(yaml.safe_load_all(ROLE.read_text()))
    roles = {(d["kind"], d["metadata"]["name"]) for d in documents if d["kind"] in ("Role", "ClusterRole")}
    bindings = [d for d in documents if d["kind"].endswith("Binding")]
    assert len(bindings) == 2
    for binding in bindings:
        assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in roles
