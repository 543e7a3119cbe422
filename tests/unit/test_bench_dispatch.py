"""The dispatch benchmark's pieces that can be wrong without timing: the open-loop pacer, the percentiles, the
summary's keys. No benchmark runs here."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from bench import dispatch, fleet


def test_due_times_are_evenly_spaced_at_the_offered_rate() -> None:
    assert fleet.due_offsets(4, 100.0) == pytest.approx([0.0, 0.01, 0.02, 0.03])
    assert fleet.due_offsets(0, 100.0) == []


async def test_the_open_loop_sends_every_request_once_in_order() -> None:
    seen: list[int] = []

    async def call(request: int) -> int:
        seen.append(request)
        return request * 2

    loaded = await fleet.open_loop(call, list(range(25)), rate_per_s=1e6)
    assert seen == list(range(25))
    assert [c.reply for c in loaded.calls] == [i * 2 for i in range(25)]
    assert all(not c.error for c in loaded.calls)


async def test_the_open_loop_does_not_wait_for_a_slow_reply_before_sending_the_next() -> None:
    release = asyncio.Event()
    started: list[int] = []

    async def call(request: int) -> int:
        started.append(request)
        if request == 0:
            await release.wait()  # the first call hangs until every other one has been sent
        if len(started) == 5:
            release.set()
        return request

    loaded = await asyncio.wait_for(fleet.open_loop(call, list(range(5)), rate_per_s=1e6), 5)
    assert len(loaded.calls) == 5


async def test_a_failed_call_is_kept_with_its_status_not_raised() -> None:
    class Failed(grpc.aio.AioRpcError):
        def __init__(self) -> None:
            super().__init__(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "down", None)

    async def call(request: int) -> int:
        if request == 1:
            raise Failed()
        return request

    loaded = await fleet.open_loop(call, [0, 1, 2], rate_per_s=1e6)
    assert [c.error for c in loaded.calls] == ["", "UNAVAILABLE: down", ""]


def test_latency_figures_use_nearest_rank_percentiles_in_milliseconds() -> None:
    figures = fleet.latency_figures([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert figures["p50_ms"] == pytest.approx(50.0)
    assert figures["p99_ms"] == pytest.approx(99.0)
    assert figures["max_ms"] == pytest.approx(100.0)
    assert fleet.latency_figures([]) == {"p50_ms": 0.0, "p99_ms": 0.0, "mean_ms": 0.0, "max_ms": 0.0}


def _result(p99: float, started: int = 1000) -> dispatch.DispatchResult:
    figures = {"p50_ms": 10.0, "p99_ms": p99, "mean_ms": 12.0, "max_ms": p99 + 1}
    return dispatch.DispatchResult(dispatch.Plan(), started, 0, "", 10.0, 1.0, figures, figures)


def test_the_summary_names_only_the_dispatch_p99() -> None:
    assert _result(120.0).summary() == {"dispatch.p99_ms": 120.0}
    assert _result(120.0, started=0).summary() == {"dispatch.p99_ms": None}


def test_the_target_is_a_p99_under_250_ms_with_every_job_started() -> None:
    assert _result(249.0).met and not _result(251.0).met
    assert not _result(100.0, started=999).met
    assert "p99 < 250 ms: MISSED" in _result(300.0).render()
    assert _result(100.0).to_json()["met"] is True


def test_the_reply_carries_the_request_id_the_latency_is_matched_by() -> None:
    from fedgate.v1 import job_pb2, job_service_pb2

    reply: Any = job_service_pb2.CreateJobResponse(job=job_pb2.Job(request_id="d-1-7"))
    assert dispatch.job_request_id(reply) == "d-1-7"


def test_results_render_a_table_with_a_header_rule() -> None:
    text = fleet.table([["a", "bb"], ["ccc", "d"]])
    assert text.splitlines() == ["a   | bb", "----+---", "ccc | d"]
