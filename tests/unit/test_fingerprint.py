"""A request's fingerprint is the digest it always was: jobs stored with one keep their retries answered.

The reference is the first implementation (the JSON of `dataclasses.asdict`), kept here as it was; the
fingerprint now builds the same JSON without asdict's deep copies. Every example job, a job with every field
set (env pairs, labels, stack runs, topology, a reservation, a dataset, times) and a reservation request must
digest the same way."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.app.config import REPO_POLICIES
from gateway.jobs.model import JobSpec, Resources, StackRun
from gateway.jobs.specfile import load_job_spec
from gateway.reservations.model import ReservationRequest
from gateway.trust.replay import _plain, fingerprint

EXAMPLES = REPO_POLICIES.parent / "examples" / "jobs"


def reference(request: object) -> str:
    text = json.dumps(dataclasses.asdict(request), sort_keys=True, separators=(",", ":"), default=_plain)  # type: ignore[call-overload]
    return hashlib.sha256(text.encode()).hexdigest()


def example_specs() -> list[Path]:
    return sorted(EXAMPLES.rglob("*.yaml"))


@pytest.mark.parametrize("path", example_specs(), ids=lambda p: p.name)
def test_every_example_job_digests_as_it_always_did(path: Path) -> None:
    spec = load_job_spec(path, default_tenant="deepsea-ai")
    assert fingerprint(spec) == reference(spec)


def test_a_job_with_every_field_set_and_a_reservation_request_digest_as_they_always_did() -> None:
    spec = JobSpec(
        "deepsea-ai",
        "llama-sft",
        Resources("nvidia-h100", None, 16, nodes=2),
        (StackRun("cuda", "registry.example/train:1", ("python", "train.py", "--lr", "3e-4")),),
        name="full",
        env=(("A", "1"), ("B", "two")),
        labels=(("team", "core"),),
        max_runtime=timedelta(hours=6),
        priority_class="high",
        dataset="web-zh",
    )
    assert fingerprint(spec) == reference(spec)
    start = datetime(2026, 12, 8, 9, tzinfo=UTC)
    booking = ReservationRequest(
        "deepsea-ai", "llama-sft", Resources("ascend-910b", None, 8), start, start + timedelta(hours=2)
    )
    assert fingerprint(booking) == reference(booking)
    assert fingerprint(spec) != fingerprint(dataclasses.replace(spec, env=(("A", "1"),)))
