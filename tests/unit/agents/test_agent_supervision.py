"""Supervision inside the agent: a per-attempt task that fails is logged and its attempt reported, and the agent
goes on; a failing stream loop ends that stream only, and the link re-dials."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from agents.backends.base import ExitStatus, JobHandle
from agents.core.commands import Drain
from agents.core.config import AgentConfig
from agents.core.model import JobState
from agents.core.runtime import SiteRuntime
from agents.journal.base import MemoryJournal
from gateway.sites.registry import DrainCommand
from tests.waiting import eventually_async

from .conftest import GatewayUnderTest, running_agent
from .fakes import FakeBackend, FakeHandle
from .test_agent_runtime import launch, make_config


class BrokenWaitBackend(FakeBackend):
    """`wait` of job `broken` raises what no backend should (a bug); other jobs are watched as usual."""

    async def wait(self, handle: JobHandle) -> ExitStatus:
        assert isinstance(handle, FakeHandle)
        if handle.job_id == "broken":
            raise RuntimeError("the backend's wait is broken")
        return await super().wait(handle)


async def test_a_failing_attempt_watcher_is_logged_and_reported_and_the_agent_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = BrokenWaitBackend()
    runtime = SiteRuntime(make_config(), backend, MemoryJournal())
    await runtime.handle(launch("broken", cards=1))
    await runtime.handle(launch("fine", cards=1))

    def final(job: str) -> JobState | None:
        states = [u.state for u in runtime.unacknowledged_updates() if u.job_id == job]
        return states[-1] if states and states[-1].is_final else None

    await eventually_async(lambda: final("broken") is not None, what="the broken attempt's final update")
    (lost,) = [u for u in runtime.unacknowledged_updates() if u.job_id == "broken" and u.state.is_final]
    assert lost.state is JobState.LOST  # nobody saw it end: the gateway queues it again
    assert backend.handles[("broken", 1)].cancel_graces == [0.0]  # stopped first, in case it still ran
    assert lost.message == "the site lost track of the job (the backend's wait is broken)"
    assert "job broken epoch 1: lost track of the job" in caplog.text
    assert "RuntimeError: the backend's wait is broken" in caplog.text  # with its traceback
    assert [r.job_id for r in runtime.running()] == ["fine"]  # its devices are free again, the other runs on
    backend.finish("fine", 1)
    await eventually_async(lambda: final("fine") is JobState.SUCCEEDED, what="the other attempt's success")
    await asyncio.wait_for(runtime.shutdown(timeout_s=1.0), 5)


async def test_a_failing_stream_loop_ends_that_stream_and_the_link_re_dials(
    gateway: GatewayUnderTest,
    make_config: Callable[..., AgentConfig],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real_handle = SiteRuntime.handle
    broke: list[object] = []

    async def handle(self: SiteRuntime, command: object) -> object:
        if isinstance(command, Drain) and not broke:  # the first Drain meets a bug in the receive loop's path
            broke.append(command)
            raise RuntimeError("a bug while handling a command")
        return await real_handle(self, command)  # type: ignore[arg-type]

    monkeypatch.setattr(SiteRuntime, "handle", handle)
    async with running_agent(make_config(gateway=gateway.target)) as agent:
        first = await gateway.fake.next_stream()
        first.send_command(DrainCommand(True))
        second = await gateway.fake.next_stream()  # the receive loop failed, the send loop was cancelled with it
        sequence = second.send_command(DrainCommand(True))
        assert (await second.next("ack")).ack.sequence == sequence  # the new stream works
        assert not agent.task.done(), "one stream failing is not the agent failing"
    assert len(broke) == 1 and len(gateway.fake.hellos) == 2
    assert "the stream failed unexpectedly" in caplog.text
    assert "RuntimeError: a bug while handling a command" in caplog.text  # with its traceback
