"""The end-to-end benchmark's pieces that can be wrong without timing: the summary's keys, the verdict, the
closed-loop step's check that a job SUCCEEDED, and reading a cProfile file. No benchmark runs here."""

from __future__ import annotations

import cProfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench import end_to_end, fleet
from bench.load import RunResult
from fedgate.v1 import job_pb2, job_service_pb2


def _run(requests: int, seconds: float, errors: int = 0) -> RunResult:
    return RunResult(requests, 128, seconds, False, errors, "", 1.0, 2.0, 1.5, 3.0)


def test_the_summary_names_only_end_to_end_jobs_per_second() -> None:
    result = end_to_end.EndToEndResult(end_to_end.Plan(), _run(2000, 4.0), _run(2000, 2.0))
    assert result.summary() == {"end_to_end.jobs_per_s": 500.0}
    assert result.met
    assert "admission alone" in result.render() and "50%" in result.render()


def test_an_error_misses_the_target_whatever_the_rate() -> None:
    assert not end_to_end.EndToEndResult(end_to_end.Plan(), _run(2000, 1.0, errors=1), _run(2000, 1.0)).met


class _Stub:
    """JobService as the closed-loop step sees it: CreateJob, then a watch ending in `final`."""

    def __init__(self, final: job_pb2.JobState) -> None:
        self.final = final

    async def CreateJob(self, request: Any, **options: Any) -> job_service_pb2.CreateJobResponse:
        return job_service_pb2.CreateJobResponse(job=job_pb2.Job(job_id="j1", state=job_pb2.JOB_STATE_QUEUED))

    def WatchJob(self, request: Any) -> AsyncIterator[job_service_pb2.WatchJobResponse]:
        async def events() -> AsyncIterator[job_service_pb2.WatchJobResponse]:
            for state in (job_pb2.JOB_STATE_RUNNING, self.final):
                yield job_service_pb2.WatchJobResponse(job=job_pb2.Job(job_id="j1", state=state))

        return events()


async def test_a_job_that_ends_otherwise_than_succeeded_is_a_failure() -> None:
    failures: list[str] = []
    await end_to_end.submit_and_follow(_Stub(job_pb2.JOB_STATE_SUCCEEDED), failures)(None)  # type: ignore[arg-type]
    assert failures == []
    await end_to_end.submit_and_follow(_Stub(job_pb2.JOB_STATE_FAILED), failures)(None)  # type: ignore[arg-type]
    assert failures == ["job j1 ended JOB_STATE_FAILED"]


def _busy() -> int:
    return sum(i * i for i in range(20_000))


def test_the_profile_report_lists_functions_with_their_share(tmp_path: Path) -> None:
    profiler = cProfile.Profile()
    profiler.runcall(_busy)
    path = tmp_path / "p.prof"
    profiler.dump_stats(path)
    text = fleet.profile_text(path, 5)
    assert "top 5 by cumulative time" in text and "top 5 by own time" in text
    assert "%" in text
