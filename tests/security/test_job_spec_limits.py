"""One validation for every entry point: what the job file refuses, CreateJob and ExplainJob refuse too, and no
job, however large, makes `job list` fail for anyone.

An attacker skips the CLI and speaks gRPC directly with specs the job file format never lets through: a command
of megabytes, a name that is a path or holds a newline, env names that would inject a line into a batch script,
empty label keys, images with spaces, four billion cards. Each is INVALID_ARGUMENT naming the field, and nothing
is stored. Jobs stored before the limits existed (or many jobs at the limit) list in pages under the gRPC
message limit instead of failing every listing with RESOURCE_EXHAUSTED."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import grpc
import pytest
import yaml

from fedgate.v1 import job_service_pb2, job_service_pb2_grpc, reason_pb2
from gateway.errors import ConfigError
from gateway.jobs.model import Job, JobEvent, JobSpec, JobState, StackRun
from gateway.jobs.specfile import parse_job_spec, spec_to_dict
from gateway.transport import convert
from tests.integration.harness import GatewayHandle
from tests.security.support import ALICE, CALL_TIMEOUT_S, assert_refused, creds_channel, spec_for, store_state

MESSAGE_LIMIT = 4 * 1024 * 1024  # the gateway's (and a default client's) gRPC message limit


def run(command: tuple[str, ...] = ("true",), image: str = "") -> tuple[StackRun, ...]:
    return (StackRun("cann", image, command),)


HOSTILE: dict[str, Callable[[JobSpec], JobSpec]] = {
    "a 3.9 MB command": lambda s: replace(s, runs=run(("sh", "-c", "x" * (3_900_000)))),
    "a name that is a path": lambda s: replace(s, name="../../etc/passwd"),
    "a name with a newline": lambda s: replace(s, name="ok\nINJECTED"),
    "an env name with a trailing newline": lambda s: replace(s, env=(("FOO\n", "id"),)),
    "an env name with '='": lambda s: replace(s, env=(("A=B", "c"),)),
    "an empty label key": lambda s: replace(s, labels=(("", "v"),)),
    "an image with spaces": lambda s: replace(s, runs=run(image="ubuntu latest; rm -rf /")),
    "2^32-1 cards": lambda s: replace(s, resources=replace(s.resources, cards=2**32 - 1)),
    "a megabyte of env": lambda s: replace(s, env=tuple((f"V{i}", "x" * 30_000) for i in range(40))),
}


def raw_jobs(gateway: GatewayHandle) -> tuple[grpc.Channel, job_service_pb2_grpc.JobServiceStub]:
    channel = creds_channel(gateway, gateway.pki.user(*ALICE))
    return channel, job_service_pb2_grpc.JobServiceStub(channel)


@pytest.mark.parametrize("what", sorted(HOSTILE))
def test_grpc_refuses_what_the_job_file_refuses(gateway: GatewayHandle, what: str) -> None:
    spec = HOSTILE[what](spec_for())
    with pytest.raises(ConfigError):  # the job file: refused at its line
        parse_job_spec(yaml.safe_dump(spec_to_dict(spec)), "job.yaml")
    before = store_state(gateway)
    channel, jobs = raw_jobs(gateway)
    with channel:
        create = job_service_pb2.CreateJobRequest(request_id="r", spec=convert.spec_to_proto(spec))
        explain = job_service_pb2.ExplainJobRequest(spec=convert.spec_to_proto(spec))
        for call in (
            lambda: jobs.CreateJob(create, timeout=CALL_TIMEOUT_S),
            lambda: jobs.ExplainJob(explain, timeout=CALL_TIMEOUT_S),
        ):
            error = assert_refused(call, "INVALID_ARGUMENT")
            assert error.reason in {"JOB_SPEC_INVALID", "BAD_CARD_COUNT"}, error
    assert store_state(gateway) == before


def stored_before_the_limits(gateway: GatewayHandle, *sizes: int) -> list[Job]:
    """Jobs with commands of `sizes` bytes written straight into the store, as a gateway without the limits
    accepted them (or a store edited by hand)."""
    store, now, made = gateway.running.core.store, datetime.now(UTC), []
    for i, size in enumerate(sizes):
        spec = replace(spec_for(), runs=run(("sh", "-c", "x" * size)))
        job = Job(f"job-legacy-{i:03d}", spec, JobState.SUCCEEDED, now, now, owner="spiffe://legacy")
        made.append(store.create_job(job, JobEvent(job.job_id, JobState.SUCCEEDED, now))[0])
    return made


def all_pages(jobs: job_service_pb2_grpc.JobServiceStub) -> list[job_service_pb2.ListJobsResponse]:
    pages, token = [], ""
    while True:
        page = jobs.ListJobs(job_service_pb2.ListJobsRequest(page_size=500, page_token=token), timeout=CALL_TIMEOUT_S)
        pages.append(page)
        token = page.next_page_token
        if not token:
            return pages


def test_huge_jobs_stored_before_the_limits_do_not_break_anyones_listing(gateway: GatewayHandle) -> None:
    # Two that fit one message each, but not together; one that fits none at all.
    legacy = stored_before_the_limits(gateway, 3_900_000, 3_900_000, 4_500_000)
    with gateway.client(gateway.pki.user(*ALICE)) as alice:
        mine = alice.create_job(spec_for())
    for who in (gateway.pki.user(*ALICE), gateway.pki.admin()):
        with creds_channel(gateway, who) as channel:
            pages = all_pages(job_service_pb2_grpc.JobServiceStub(channel))
        assert all(page.ByteSize() < MESSAGE_LIMIT for page in pages)
        listed = [j for page in pages for j in page.jobs]
        assert [j.job_id for j in listed] == sorted([*(j.job_id for j in legacy), mine.job_id])
        cut = {j.job_id for j in listed if any(r.code == reason_pb2.JOB_TOO_LARGE_TO_LIST for r in j.reasons)}
        assert cut == {legacy[2].job_id}  # listed without the payload that made it too large, and saying so


def test_many_jobs_at_the_limit_are_listed_in_pages_under_the_message_limit(gateway: GatewayHandle) -> None:
    big = replace(spec_for(), env=tuple((f"V{i}", "x" * 30_000) for i in range(8)))  # about 240 kB, allowed
    with gateway.client(gateway.pki.user(*ALICE)) as alice:
        made = [alice.create_job(big).job_id for _ in range(20)]  # about 4.8 MB in all
        assert [j.job_id for j in alice.list_jobs()] == made  # the client follows the pages
    with creds_channel(gateway, gateway.pki.user(*ALICE)) as channel:
        pages = all_pages(job_service_pb2_grpc.JobServiceStub(channel))
    assert len(pages) >= 2 and all(page.ByteSize() < MESSAGE_LIMIT for page in pages)
    assert [j.job_id for page in pages for j in page.jobs] == made
