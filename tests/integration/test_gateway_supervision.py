"""The gateway process's long-lived tasks are supervised: a task that dies stops the gateway with exit code 1 and
a clear log line (so that systemd or Kubernetes restarts it), and the policy watcher survives a failing look.

A real gateway (real mTLS on port 0, a SQLite store) in the test's own event loop, stopped through
`serve_until_stopped`, the function `fedgate gateway run` waits in."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from gateway.app.config import load_gateway_config
from gateway.transport.replica import serve_until_stopped
from gateway.transport.server import RunningGateway, start_gateway
from tests.integration.harness import Pki, write_gateway_config


async def _start(pki: Pki, tmp_path: Path) -> RunningGateway:
    return await start_gateway(load_gateway_config(write_gateway_config(pki, tmp_path)))


async def test_a_dead_task_stops_the_gateway_with_exit_code_1(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fedgate.gateway")
    running = await _start(pki, tmp_path)
    died = asyncio.Event()

    async def doomed() -> None:
        died.set()
        raise RuntimeError("injected: a long-lived task broke")

    running.supervisor.spawn(doomed(), "doomed")
    code = await asyncio.wait_for(serve_until_stopped(running, asyncio.Event()), 15)
    assert died.is_set()
    assert code == 1
    lines = [r.getMessage() for r in caplog.records]
    assert any("the gateway stops with exit code 1" in line and "doomed" in line for line in lines), lines
    death = next(r for r in caplog.records if "task 'doomed' died" in r.getMessage())
    assert death.exc_info is not None  # with its traceback
    with pytest.raises(OSError):  # the server is down: nothing listens on its port any more
        await asyncio.open_connection("127.0.0.1", running.port)


async def test_a_signal_stops_the_gateway_with_exit_code_0(pki: Pki, tmp_path: Path) -> None:
    running = await _start(pki, tmp_path)
    stop = asyncio.Event()
    stop.set()
    assert await asyncio.wait_for(serve_until_stopped(running, stop), 15) == 0
    assert running.supervisor.failure is None  # the tasks it cancelled on the way out are not failures


async def test_the_policy_watcher_survives_a_failing_look(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    running = await _start(pki, tmp_path)
    try:
        calls = 0
        real = running.core.admin.policy_changed_on_disk

        def flaky() -> bool:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise PermissionError("injected: the policy file could not be read")
            return real()

        monkeypatch.setattr(running.core.admin, "policy_changed_on_disk", flaky)
        # The harness checks every 2 s (the default); a look is awaited, never slept for.
        await running.policy_looks.wait_for(2, timeout=15)
        assert running.policy_looks.failed == 1 and running.policy_looks.completed >= 1
        assert running.supervisor.failure is None
        assert any(r.exc_info is not None and "policy file check" in r.getMessage() for r in caplog.records)
    finally:
        await running.stop(0.5)
