"""Admission decides, purely, whether a job may enter the queues, and always says why."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.app.config import REPO_POLICIES
from gateway.identity.principal import Principal
from gateway.jobs.admission import admit
from gateway.jobs.model import Capability, JobSpec, Resources, StackRun
from gateway.policy import load_catalogue, load_policy

POLICY = load_policy(REPO_POLICIES / "federation.yaml")
CATALOGUE = load_catalogue(REPO_POLICIES / "accelerators.yaml")
ALICE = Principal.user("demo", "deepsea-ai", "alice")


def spec(**changes: object) -> JobSpec:
    base: dict[str, object] = {
        "tenant": "deepsea-ai",
        "project": "llama-sft",
        "resources": Resources("ascend-910b", None, 4),
        "runs": (StackRun("cann", "", ("python3", "train.py")),),
    }
    base.update(changes)
    return JobSpec(**base)  # type: ignore[arg-type]


def test_known_tenant_project_and_class_are_admitted() -> None:
    decision = admit(spec(), ALICE, POLICY, CATALOGUE)
    assert decision.admitted
    assert decision.classes == ("ascend-910b",)
    assert decision.policy_version == POLICY.version


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"tenant": "nobody"}, "TENANT_MISMATCH"),
        ({"project": "missing"}, "UNKNOWN_PROJECT"),
        ({"resources": Resources("tpu-v9", None, 1)}, "UNKNOWN_ACCELERATOR_CLASS"),
        ({"resources": Resources("ascend-910b", None, 0)}, "BAD_CARD_COUNT"),
        ({"resources": Resources("", None, 1)}, "BAD_RESOURCES"),
        ({"runs": ()}, "NO_RUN"),
        ({"max_runtime": timedelta(days=31)}, "BAD_MAX_RUNTIME"),
        ({"runs": (StackRun("cuda", "", ("x",)),)}, "NO_CLASS_CAN_SERVE"),
    ],
)
def test_each_refusal_has_its_own_reason(changes: dict[str, object], code: str) -> None:
    decision = admit(spec(**changes), ALICE, POLICY, CATALOGUE)
    assert not decision.admitted
    assert decision.reasons[0].code == code
    assert decision.reasons[0].message


def test_unknown_tenant_is_named_for_an_admin() -> None:
    admin = Principal.admin("demo", "root")
    decision = admit(spec(tenant="nobody"), admin, POLICY, CATALOGUE)
    assert decision.reasons[0].code == "UNKNOWN_TENANT"
    assert "deepsea-ai" in decision.reasons[0].message


def test_site_principals_cannot_submit() -> None:
    decision = admit(spec(), Principal.site("demo", "centre-a"), POLICY, CATALOGUE)
    assert not decision.admitted and decision.reasons[0].code == "ROLE_CANNOT_SUBMIT"


def test_capability_admits_every_class_that_meets_it_and_has_a_run() -> None:
    resources = Resources("", Capability(min_memory_gib=64, stacks=("cuda", "dtk")), 1)
    runs = (StackRun("cuda", "", ("x",)), StackRun("dtk", "", ("x",)))
    decision = admit(spec(resources=resources, runs=runs), ALICE, POLICY, CATALOGUE)
    assert decision.admitted
    assert "nvidia-h100" in decision.classes and "hygon-k100" in decision.classes
    assert "nvidia-l20" not in decision.classes  # 48 GiB
    assert "ascend-910b" not in decision.classes  # cann not asked for


def test_capability_no_class_can_meet_is_refused_with_reason() -> None:
    resources = Resources("", Capability(min_memory_gib=4096), 1)
    decision = admit(spec(resources=resources), ALICE, POLICY, CATALOGUE)
    assert not decision.admitted and decision.reasons[0].code == "NO_CLASS_CAN_SERVE"


def test_member_lists_give_roles_and_project_scopes() -> None:
    from gateway.trust import access

    bob = Principal.user("demo", "panda-lm", "bob")
    carol = Principal.user("demo", "panda-lm", "carol")
    mallory = Principal.user("demo", "panda-lm", "mallory")
    assert access.role_in(bob, POLICY, "panda-lm", "inference") == "member"
    assert access.role_in(carol, POLICY, "panda-lm", "eval") == "viewer"
    assert access.role_in(carol, POLICY, "panda-lm", "inference") is None  # scoped to eval
    assert access.role_in(mallory, POLICY, "panda-lm", "eval") is None  # not on the list
    assert access.role_in(ALICE, POLICY, "deepsea-ai", "llama-sft") == "member"  # no list: every user
    viewer_token = Principal("user", "demo", "alice", "deepsea-ai", read_only=True)
    assert access.role_in(viewer_token, POLICY, "deepsea-ai") == "viewer"
    with pytest.raises(Exception, match="may not submit"):
        access.require_member(carol, POLICY, "panda-lm", "eval")
