"""A retry of a create call gets the original job (AIP-155), however admission would judge the request now.

New requests are admitted first and their insert finds an original under the request id (one store round
trip per call); a request admission refuses is looked up by its request id before the refusal is sent, so a
retry made after a policy change that would refuse the job still gets the original, and a new request is
refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app.config import REPO_POLICIES
from gateway.errors import GatewayError
from gateway.identity.principal import Principal
from gateway.jobs.model import JobSpec, Resources, StackRun

from .schedworld import H100, World

ALICE = Principal.user("demo", "deepsea-ai", "alice")


def joint(cards: int) -> JobSpec:
    """A job of the joint project open-moe, whose quota is 24 concurrent cards (policies/federation.yaml)."""
    return JobSpec("deepsea-ai", "open-moe", Resources(H100, None, cards), (StackRun("", "", ("train",)),))


async def test_a_retry_gets_the_original_even_when_admission_would_now_refuse_it(tmp_path: Path) -> None:
    policy = tmp_path / "federation.yaml"
    policy.write_text((REPO_POLICIES / "federation.yaml").read_text())
    world = World(policy)
    first = await world.fed.jobs.create_job(ALICE, joint(24), request_id="r1")
    # The admins lower the joint project's quota below the job: the same request is refused when new...
    policy.write_text(policy.read_text().replace('concurrent_cards: {"*": 24}', 'concurrent_cards: {"*": 8}'))
    assert world.fed.policy.reload(world.now)[1]
    with pytest.raises(GatewayError) as refused:
        await world.fed.jobs.create_job(ALICE, joint(24), request_id="r2")
    assert refused.value.reason == "QUOTA_TOO_SMALL"
    # ...but its retry gets the job it made.
    again = await world.fed.jobs.create_job(ALICE, joint(24), request_id="r1")
    assert again.job_id == first.job_id
    assert len(world.fed.book.active) == 1


async def test_a_retry_admitted_again_is_answered_by_the_insert_with_the_original() -> None:
    world = World()
    first = await world.fed.jobs.create_job(ALICE, joint(8), request_id="r1")
    again = await world.fed.jobs.create_job(ALICE, joint(8), request_id="r1")
    assert again.job_id == first.job_id and len(world.fed.book.active) == 1
    with pytest.raises(GatewayError) as reused:
        await world.fed.jobs.create_job(ALICE, joint(4), request_id="r1")  # another request under the same id
    assert reused.value.reason == "REQUEST_ID_REUSED"
