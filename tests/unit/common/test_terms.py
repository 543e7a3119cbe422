"""The centre's terms, one rule: what the agent refuses on launch is exactly what the gateway avoids placing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agents.core.model import PoolSpec
from agents.policy.terms import PREFIX, LaunchRequest, Refusal, SitePolicy, judge_launch
from fedgate.common.terms import SiteTerms, TermsRefusal
from gateway.jobs.model import JobSpec, Resources, StackRun
from gateway.sites.model import SiteTerms as GatewaySiteTerms

TERMS = SiteTerms(
    tenants=("deepsea-ai", "panda-lm"),
    projects=("deepsea-ai/llama-sft",),
    max_job_cards=8,
    image_registries=("harbor.centre-a.cn/ai", "registry.example.org"),
)

# (tenant, project, cards, image) -> the term that refuses it ("" when taken)
CASES = [
    ("deepsea-ai", "llama-sft", 8, "harbor.centre-a.cn/ai:1", ""),
    ("panda-lm", "anything", 1, "registry.example.org/team/app:2", ""),  # projects limit only the tenants named
    ("panda-lm", "eval", 4, "", "image_registries"),  # a bare command runs whatever the machine has: refused
    ("panda-lm", "eval", 1, "harbor.centre-a.cn/ai/llama@sha256:" + "a" * 64, ""),  # below the path, by digest
    ("panda-lm", "eval", 1, "REGISTRY.example.org/team/app", ""),  # host names are case-insensitive
    ("orca-labs", "eval", 1, "", "tenants"),
    ("", "eval", 1, "", "tenants"),
    ("deepsea-ai", "moe-pretrain", 1, "", "projects"),
    ("panda-lm", "eval", 9, "", "max_job_cards"),
    ("orca-labs", "eval", 99, "docker.io/x", "tenants"),  # the first term in order names the refusal
    ("panda-lm", "eval", 1, "harbor.centre-a.cn/aix/llama:1", "image_registries"),
    ("panda-lm", "eval", 1, "registry.example.org.evil/x", "image_registries"),
    ("panda-lm", "eval", 1, "registry.example.org:5001/x", "image_registries"),
    ("panda-lm", "eval", 1, "registry.example.org", "image_registries"),
    # What a string-prefix test let through: parsed as references, these are not from an allowed registry.
    ("panda-lm", "eval", 1, "registry.example.org/../evil.io/x", "image_registries"),
    ("panda-lm", "eval", 1, "registry.example.org/team/../../evil.io/x:1", "image_registries"),
    ("panda-lm", "eval", 1, "registry.example.org//evil.io/x", "image_registries"),
    ("panda-lm", "eval", 1, "registry.example.org/x\n", "image_registries"),
    ("panda-lm", "eval", 1, "registry.example.org/x y", "image_registries"),
    ("panda-lm", "eval", 1, "registry.example.org/Team/app", "image_registries"),  # paths are lowercase
    ("panda-lm", "eval", 1, "harbor.centre-a.cn/ai/../../evil", "image_registries"),
    ("panda-lm", "eval", 1, "registry.example.org@evil.io/x", "image_registries"),
]


@pytest.mark.parametrize(("tenant", "project", "cards", "image", "term"), CASES)
def test_the_rule_names_the_first_refusing_term(tenant: str, project: str, cards: int, image: str, term: str) -> None:
    refused = TERMS.judge(tenant=tenant, project=project, cards=cards, image=image)
    assert (refused.term if refused else "") == term


@pytest.mark.parametrize(("tenant", "project", "cards", "image", "term"), CASES)
def test_gateway_and_agent_apply_the_same_rule(tenant: str, project: str, cards: int, image: str, term: str) -> None:
    refused = TERMS.judge(tenant=tenant, project=project, cards=cards, image=image)
    gateway = GatewaySiteTerms(**vars(TERMS))
    spec = JobSpec(tenant, project, Resources("ascend-910b", None, cards), (StackRun("cann", image, ("t",)),))
    policy = SitePolicy(
        tenants=TERMS.tenants,
        projects=TERMS.projects,
        max_job_cards=TERMS.max_job_cards,
        image_registries=TERMS.image_registries,
    )
    assert policy.terms == TERMS
    launch = LaunchRequest(tenant, project, "ascend-910b", cards, image)
    agent = judge_launch(
        policy, PoolSpec("ascend-910b", cards=16, offered=16, cards_per_node=8), launch, datetime.now(UTC)
    )
    assert gateway.refusal(spec, image) == (refused.message if refused else "")
    assert agent == (None if refused is None else Refusal(refused.term, PREFIX + refused.message))


def test_no_terms_accept_everything() -> None:
    assert SiteTerms().judge(tenant="", project="", cards=10**6, image="anything/at:all") is None
    assert SiteTerms().judge(tenant="", project="", cards=1, image="") is None  # and bare commands


def test_refusals_say_what_the_centre_takes() -> None:
    assert TERMS.judge(tenant="panda-lm", project="x", cards=9, image="") == TermsRefusal(
        "max_job_cards", "jobs of at most 8 cards are accepted here; this one needs 9"
    )
    assert TERMS.judge(tenant="panda-lm", project="x", cards=1, image="") == TermsRefusal(
        "image_registries",
        "only images from harbor.centre-a.cn/ai, registry.example.org run here; give the run an image from one of them",
    )
