"""Preemption at the site: the job knows its grace, gets SIGTERM to checkpoint, then SIGKILL after the grace."""

from __future__ import annotations

from pathlib import Path

from agents.backends.base import BackendSettings
from agents.backends.registry import create_backend
from agents.core.commands import Launch, Preempt
from agents.core.config import AgentConfig, TlsFiles
from agents.core.model import JobState, JobUpdate, PoolSpec
from agents.core.runtime import PREEMPT_GRACE_ENV, SiteRuntime
from agents.journal.base import MemoryJournal
from tests.jobs import JOB_PYTHON
from tests.waiting import eventually_async

PY = JOB_PYTHON
# Announces itself once its SIGTERM handler is in place, then checkpoints on SIGTERM and exits.
CHECKPOINTING = (
    "import os, pathlib, signal, sys, time\n"
    "def stop(*_):\n"
    "    pathlib.Path('checkpoint').write_text(os.environ['FEDGATE_PREEMPT_GRACE_S'])\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    "pathlib.Path('ready').touch()\n"
    "time.sleep(60)\n"
)
STUBBORN = "import pathlib, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
STUBBORN += "pathlib.Path('ready').touch()\ntime.sleep(60)\n"


def runtime_on(tmp_path: Path) -> SiteRuntime:
    config = AgentConfig(
        site="centre-a",
        gateway="127.0.0.1:1",
        tls=TlsFiles(Path("ca"), Path("cert"), Path("key")),
        backend=BackendSettings(type="local", workdir=tmp_path / "work"),
        pools=(PoolSpec("nvidia-h100", cards=4, offered=4, cards_per_node=4, stack="cuda"),),
        cancel_grace_s=0.2,
    )
    return SiteRuntime(config, create_backend(config.backend), MemoryJournal())


def run(script: str, env: dict[str, str] | None = None) -> Launch:
    return Launch("j1", 1, 1, "nvidia-h100", cards=1, command=(PY, "-c", script), env=env or {})


async def final_update(runtime: SiteRuntime) -> JobUpdate:
    def ended() -> bool:
        updates = runtime.unacknowledged_updates()
        return bool(updates) and updates[-1].state.is_final

    await eventually_async(ended, what="the job's final update")
    return runtime.unacknowledged_updates()[-1]


async def test_a_preempted_job_checkpoints_on_sigterm_and_is_reported_preempted(tmp_path: Path) -> None:
    runtime = runtime_on(tmp_path)
    await runtime.handle(run(CHECKPOINTING, {PREEMPT_GRACE_ENV: "7"}))
    folder = tmp_path / "work" / "j1" / "1"
    await eventually_async((folder / "ready").exists, what="the job to install its SIGTERM handler")
    await runtime.handle(Preempt("j1", 1, grace_s=7))
    final = await final_update(runtime)
    assert (final.state, final.exit_code) == (JobState.PREEMPTED, 0)
    assert (folder / "checkpoint").read_text() == "7"  # the gateway's grace, as the job saw it
    assert runtime.capacity()[0].free == 4


async def test_a_job_that_ignores_sigterm_is_killed_after_its_grace(tmp_path: Path) -> None:
    runtime = runtime_on(tmp_path)
    await runtime.handle(run(STUBBORN))
    folder = tmp_path / "work" / "j1" / "1"
    await eventually_async((folder / "ready").exists, what="the job to ignore SIGTERM")
    await runtime.handle(Preempt("j1", 1, grace_s=0.3))
    final = await final_update(runtime)
    assert (final.state, final.exit_code) == (JobState.PREEMPTED, 128 + 9)
    assert runtime.running() == []


async def test_a_job_launched_without_a_grace_from_the_gateway_gets_the_agents_own(tmp_path: Path) -> None:
    runtime = runtime_on(tmp_path)
    await runtime.handle(run("import os; print(os.environ['FEDGATE_PREEMPT_GRACE_S'])"))
    final = await final_update(runtime)
    assert final.state is JobState.SUCCEEDED
    assert (tmp_path / "work" / "j1" / "1" / "output.log").read_text().strip() == "0.2"
