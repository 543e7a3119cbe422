"""Fair share orders the queue: below-share tenants first, weights respected, old jobs never starved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.app.config import REPO_POLICIES
from gateway.jobs.model import Job, JobSpec, JobState, Resources, StackRun
from gateway.placement.fairshare import AGING_PERIOD, dominant_shares, queue_key
from gateway.policy import parse_policy
from gateway.policy.quotas import Usage

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
POLICY = parse_policy((REPO_POLICIES / "federation.yaml").read_bytes(), "federation.yaml")


def job(job_id: str, tenant: str, project: str, age: timedelta = timedelta(0)) -> Job:
    spec = JobSpec(tenant, project, Resources("nvidia-h100", None, 1), (StackRun("cuda", "", ("t",)),))
    return Job(job_id, spec, JobState.QUEUED, NOW - age, NOW - age)


def test_the_tenant_holding_less_of_the_offer_goes_first() -> None:
    usage = Usage(held={("deepsea-ai", "llama-sft", "nvidia-h100"): 6}, offered={"nvidia-h100": 8})
    shares = dominant_shares(usage, POLICY)
    greedy, modest = job("job-1", "deepsea-ai", "llama-sft"), job("job-2", "panda-lm", "eval")
    order = sorted([greedy, modest], key=lambda j: queue_key(j, 50, shares, POLICY, NOW))
    assert [j.job_id for j in order] == ["job-2", "job-1"]  # the older job waits: deepsea holds 75 %


def test_the_dominant_share_is_the_largest_fraction_of_any_class() -> None:
    usage = Usage(
        held={("panda-lm", "eval", "nvidia-h100"): 1, ("panda-lm", "eval", "hygon-k100"): 6},
        offered={"nvidia-h100": 10, "hygon-k100": 8},
    )
    assert dominant_shares(usage, POLICY)[("panda-lm", "*")] == 6 / 8


def test_priority_beats_fair_share_and_age_lifts_priority() -> None:
    usage = Usage(held={("deepsea-ai", "llama-sft", "nvidia-h100"): 8}, offered={"nvidia-h100": 8})
    shares = dominant_shares(usage, POLICY)
    urgent = job("job-9", "deepsea-ai", "llama-sft")
    normal = job("job-1", "panda-lm", "eval")
    assert queue_key(urgent, 100, shares, POLICY, NOW) < queue_key(normal, 50, shares, POLICY, NOW)
    patient = job("job-0", "panda-lm", "eval", age=AGING_PERIOD * 60)
    assert queue_key(patient, 50, shares, POLICY, NOW) < queue_key(urgent, 100, shares, POLICY, NOW)


def test_a_joint_project_has_a_share_of_its_own() -> None:
    usage = Usage(held={("deepsea-ai", "open-moe", "nvidia-h100"): 4}, offered={"nvidia-h100": 8})
    shares = dominant_shares(usage, POLICY)
    assert shares[("*", "open-moe")] == 0.5
    assert ("deepsea-ai", "*") not in shares  # the joint work does not count against deepsea's own share
