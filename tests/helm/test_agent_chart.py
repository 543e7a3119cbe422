"""What the agent chart promises: the RBAC of docs/rbac/agent-role.yaml (the calls the kubernetes backend makes),
a config file the agent accepts, credentials enrolled once from a join token or copied once from a Secret into a
writable TLS directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from agents.backends.kubernetes.api import API_PERMISSIONS, PODGROUPS, VOLCANO_GROUP
from agents.core.config import load_agent_config
from tests.helm.charts import AGENT, NAMESPACE, by_kind, examples, manifests, values_of
from tests.unit.agents.test_kube_rbac import granted as documented

VOLCANO = {(VOLCANO_GROUP, PODGROUPS, "create"), (VOLCANO_GROUP, PODGROUPS, "delete")}
ENROL = values_of(AGENT / "examples" / "enrol-with-join-token.yaml")


def grants(docs: list[dict[str, Any]]) -> dict[str, set[tuple[str, str, str]]]:
    found: dict[str, set[tuple[str, str, str]]] = {"Role": set(), "ClusterRole": set()}
    for doc in docs:
        for rule in doc.get("rules", []) if doc["kind"] in found else []:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    found[doc["kind"]].update((group, resource, verb) for verb in rule["verbs"])
    return found


def pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"])


def test_with_volcano_the_chart_grants_what_the_docs_grant_the_calls_the_backend_makes() -> None:
    chart = grants(
        manifests(AGENT, {"backend": {"type": "kubernetes", "namespace": "fedgate-jobs", "gang": "volcano"}})
    )
    assert chart == documented()
    assert chart["Role"] | chart["ClusterRole"] == API_PERMISSIONS


def test_without_volcano_the_pod_groups_rule_is_dropped() -> None:
    chart = grants(manifests(AGENT))
    assert chart["Role"] | chart["ClusterRole"] == API_PERMISSIONS - VOLCANO


def test_the_role_lives_in_the_jobs_namespace_and_binds_the_agent_s_account() -> None:
    docs = manifests(AGENT, ENROL)
    (account,) = by_kind(docs, "ServiceAccount")
    (role,) = by_kind(docs, "Role")
    assert role["metadata"]["namespace"] == ENROL["backend"]["namespace"]
    for binding in by_kind(docs, "RoleBinding") + by_kind(docs, "ClusterRoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
        ]
        kind = binding["roleRef"]["kind"]
        assert binding["roleRef"]["name"] in {d["metadata"]["name"] for d in by_kind(docs, kind)}
    assert pod(docs)["serviceAccountName"] == account["metadata"]["name"]


def test_the_config_file_is_one_the_agent_accepts(tmp_path: Path) -> None:
    for values in [{}, *(values_of(e) for e in examples(AGENT))]:
        (config_map,) = by_kind(manifests(AGENT, values), "ConfigMap")
        path = tmp_path / "agent.yaml"
        path.write_text(config_map["data"]["agent.yaml"])
        config = load_agent_config(path, validate_files=False)
        assert config.tls.cert == Path("/var/lib/fedgate/tls/cert.pem")
        assert config.state_dir == Path("/var/lib/fedgate/state")


def test_enrolment_runs_once_from_the_token_secret_into_the_state_volume() -> None:
    docs = manifests(AGENT, ENROL)
    spec = pod(docs)
    (init,) = spec["initContainers"]
    script = init["command"][-1]
    assert script.index("if [ -f /var/lib/fedgate/tls/cert.pem ]") < script.index("fedgate agent enroll")
    assert "--token-file /etc/fedgate/join/token" in script and "--out /var/lib/fedgate/tls" in script
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["FEDGATE_CA_FINGERPRINT"] == ENROL["enrollment"]["caFingerprint"]
    token = next(v for v in spec["volumes"] if v["name"] == "join-token")["secret"]
    assert token["secretName"] == "fedgate-join-token" and token["items"] == [{"key": "token", "path": "token"}]
    state = next(v for v in spec["volumes"] if v["name"] == "state")
    (claim,) = by_kind(docs, "PersistentVolumeClaim")
    assert state["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["state"]["mountPath"] == "/var/lib/fedgate" and not mounts["state"].get("readOnly")


def test_credentials_from_a_secret_are_copied_once_into_the_writable_tls_directory() -> None:
    spec = pod(manifests(AGENT))
    script = spec["initContainers"][0]["command"][-1]
    assert "enroll" not in script and "cp /etc/fedgate/tls/ca.pem" in script
    assert script.index("cert.pem ]; then") < script.index("cp ")
    seed = next(v for v in spec["volumes"] if v["name"] == "tls-seed")
    assert seed["secret"]["secretName"] == "fedgate-agent-tls"


def test_one_agent_per_site() -> None:
    (deployment,) = by_kind(manifests(AGENT), "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"


def test_the_rendered_config_map_round_trips_the_backend_values() -> None:
    (config_map,) = by_kind(manifests(AGENT, ENROL), "ConfigMap")
    assert yaml.safe_load(config_map["data"]["agent.yaml"])["backend"] == ENROL["backend"]
