"""The local backend with real subprocesses: environment, working folder, log, exits, kills, bad commands."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from agents.backends.base import BackendSettings, LaunchSpec
from agents.backends.local import LocalBackend, LocalHandle
from agents.backends.registry import create_backend
from agents.core.commands import Cancel, Launch
from agents.core.config import AgentConfig, TlsFiles
from agents.core.model import JobState, JobUpdate, PoolSpec
from agents.core.runtime import SiteRuntime
from agents.errors import LaunchFailed
from agents.journal.base import MemoryJournal
from tests.jobs import JOB_PYTHON, shared_folder
from tests.waiting import alive, eventually_async

PY = JOB_PYTHON


def spec(*command: str, job: str = "j1", stack: str = "cuda", devices: tuple[int, ...] = (2, 3)) -> LaunchSpec:
    return LaunchSpec(
        site="centre-a",
        job_id=job,
        epoch=7,
        attempt=2,
        accelerator_class="nvidia-h100",
        stack=stack,
        command=command,
        devices=devices,
        env={"FROM_JOB": "yes", "FEDGATE_SITE": "spoofed"},
    )


@pytest.fixture
def backend(tmp_path: Path) -> LocalBackend:
    made = create_backend(BackendSettings(type="local", workdir=tmp_path / "work"))
    assert isinstance(made, LocalBackend)
    return made


async def test_job_runs_in_its_folder_with_fedgate_env_and_a_log(backend: LocalBackend, tmp_path: Path) -> None:
    script = (
        "import json, os; print('hello from the job'); "
        "print(json.dumps({k: v for k, v in os.environ.items() "
        "if k.startswith(('FEDGATE_', 'CUDA_', 'FROM_'))})); "
        "print(os.getcwd())"
    )
    handle = await backend.launch(spec(PY, "-c", script))
    status = await asyncio.wait_for(backend.wait(handle), 10)
    assert status.succeeded
    folder = tmp_path / "work" / "j1" / "7"
    lines = (folder / "output.log").read_text().splitlines()
    assert lines[0] == "hello from the job"
    seen = json.loads(lines[1])
    port = seen.pop("FEDGATE_MASTER_PORT")  # a free port the backend picked: rank 0 could listen on it
    assert port.isdigit() and 0 < int(port) < 65536
    assert seen == {
        "FEDGATE_JOB_ID": "j1",
        "FEDGATE_ATTEMPT": "2",
        "FEDGATE_EPOCH": "7",
        "FEDGATE_SITE": "centre-a",  # the job cannot override what the agent sets
        "FEDGATE_ACCELERATOR_CLASS": "nvidia-h100",
        "FEDGATE_DEVICES": "2,3",
        "CUDA_VISIBLE_DEVICES": "2,3",
        "FROM_JOB": "yes",
        # A one-node attempt is a world of one node too (fedgate.common.rendezvous), its master on this machine.
        "FEDGATE_NNODES": "1",
        "FEDGATE_NODE_RANK": "0",
        "FEDGATE_MASTER_ADDR": "127.0.0.1",
        "FEDGATE_WORLD_SIZE": "2",
        "FEDGATE_NPROC_PER_NODE": "2",
    }
    assert Path(lines[2]) == folder
    assert sorted(p.name for p in folder.iterdir()) == ["exit_code", "leader.json", "output.log"]  # as before nodes


@pytest.mark.parametrize(
    ("stack", "variable"),
    [
        ("cann", "ASCEND_RT_VISIBLE_DEVICES"),
        ("dtk", "HIP_VISIBLE_DEVICES"),
        ("kunlunxin", "XPU_VISIBLE_DEVICES"),
    ],
)
async def test_each_stack_gets_its_visible_devices_variable(backend: LocalBackend, stack: str, variable: str) -> None:
    handle = await backend.launch(spec(PY, "-c", f"import os; print(os.environ['{variable}'])", stack=stack))
    await asyncio.wait_for(backend.wait(handle), 10)
    assert isinstance(handle, LocalHandle)
    assert handle.log_path.read_text().strip() == "2,3"


async def test_cpu_only_stack_sets_no_visible_devices(backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    script = "import os; print('CUDA_VISIBLE_DEVICES' in os.environ)"
    handle = await backend.launch(spec(PY, "-c", script, stack=""))
    await asyncio.wait_for(backend.wait(handle), 10)
    assert handle.log_path.read_text().strip() == "False"


async def test_non_zero_exit_is_reported_with_its_code(backend: LocalBackend) -> None:
    handle = await backend.launch(spec(PY, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"))
    status = await asyncio.wait_for(backend.wait(handle), 10)
    assert (status.exit_code, status.succeeded, status.describe()) == (3, False, "exited with code 3")
    assert "boom" in handle.log_path.read_text()  # stderr goes to the same log


async def test_cancel_kills_the_whole_process_group(backend: LocalBackend, tmp_path: Path) -> None:
    pids = shared_folder(tmp_path / "shared") / "pids"  # the job runs as nobody: it writes where all may
    script = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"child = subprocess.Popen([{PY!r}, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']); "
        f"open({str(pids)!r}, 'w').write(f'{{child.pid}}'); time.sleep(60)"
    )
    handle = await backend.launch(spec(PY, "-c", script))
    await eventually_async(lambda: pids.exists() and pids.read_text(), what="the child's pid file")
    child = int(pids.read_text())
    assert alive(child)
    await asyncio.wait_for(backend.cancel(handle, grace_s=0.2), 5)  # both ignore SIGTERM: SIGKILL after grace
    status = await asyncio.wait_for(backend.wait(handle), 5)
    assert status.describe() == "killed by SIGKILL" and status.exit_code == 137
    await eventually_async(lambda: not alive(child), timeout=5, what="the child's death")


async def test_cancel_of_an_ended_job_is_harmless(backend: LocalBackend) -> None:
    handle = await backend.launch(spec(PY, "-c", "pass"))
    await asyncio.wait_for(backend.wait(handle), 10)
    await asyncio.wait_for(backend.cancel(handle, grace_s=0.1), 5)


async def test_missing_executable_is_a_clear_launch_failure(backend: LocalBackend) -> None:
    with pytest.raises(LaunchFailed, match="executable 'no-such-trainer' was not found on this site's PATH"):
        await backend.launch(spec("no-such-trainer", "--epochs", "1"))
    with pytest.raises(LaunchFailed, match="executable '/opt/none/train' does not exist"):
        await backend.launch(spec("/opt/none/train"))


async def test_empty_command_and_unsafe_job_id_are_refused(backend: LocalBackend) -> None:
    with pytest.raises(LaunchFailed, match="empty command"):
        await backend.launch(spec())
    with pytest.raises(LaunchFailed, match="cannot be used as a folder name"):
        await backend.launch(spec(PY, "-c", "pass", job="../escape"))


# -- the runtime on the real local backend ------------------------------------------------------------


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


def run(*command: str, job: str = "j1", max_runtime_s: float = 0.0) -> Launch:
    return Launch(job, 1, 1, "nvidia-h100", cards=1, command=command, max_runtime_s=max_runtime_s)


async def final_update(runtime: SiteRuntime) -> JobUpdate:
    def ended() -> bool:
        updates = runtime.unacknowledged_updates()
        return bool(updates) and updates[-1].state.is_final

    await eventually_async(ended, what="the job's final update")
    return runtime.unacknowledged_updates()[-1]


async def test_failing_job_is_reported_failed_with_its_exit_code(tmp_path: Path) -> None:
    runtime = runtime_on(tmp_path)
    await runtime.handle(run(PY, "-c", "raise SystemExit(4)"))
    final = await final_update(runtime)
    assert (final.state, final.exit_code, final.message) == (JobState.FAILED, 4, "exited with code 4")


async def test_job_over_its_max_runtime_is_killed_and_failed(tmp_path: Path) -> None:
    runtime = runtime_on(tmp_path)
    await runtime.handle(run(PY, "-c", "import time; time.sleep(30)", max_runtime_s=0.3))
    final = await final_update(runtime)
    assert (final.state, final.message) == (JobState.FAILED, "exceeded max runtime of 0.3s")
    assert runtime.running() == []


async def test_cancelled_local_job_is_reported_cancelled(tmp_path: Path) -> None:
    runtime = runtime_on(tmp_path)
    await runtime.handle(run(PY, "-c", "import time; time.sleep(30)"))
    await runtime.handle(Cancel("j1", 1, reason="vendor cancelled"))
    final = await final_update(runtime)
    assert (final.state, final.message) == (JobState.CANCELLED, "cancelled: vendor cancelled")
    assert final.exit_code == 128 + 15


async def test_missing_executable_is_reported_failed_not_crashed(tmp_path: Path) -> None:
    runtime = runtime_on(tmp_path)
    await runtime.handle(run("no-such-trainer"))
    (update,) = runtime.unacknowledged_updates()
    assert update.state is JobState.FAILED
    assert update.message == "executable 'no-such-trainer' was not found on this site's PATH"
    assert runtime.capacity()[0].free == 4


async def test_the_agents_own_fedgate_settings_never_reach_a_job(
    backend: LocalBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDGATE_TOKEN", "secret-of-the-agent")
    script = "import os; print(os.environ.get('FEDGATE_TOKEN', 'absent'))"
    handle = await backend.launch(spec(PY, "-c", script))
    assert (await asyncio.wait_for(backend.wait(handle), 10)).succeeded
    assert (tmp_path / "work" / "j1" / "7" / "output.log").read_text().strip() == "absent"
