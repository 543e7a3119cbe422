"""The local backend finds its attempts again after the agent is gone, with real process groups: a running one is
followed to its real end, one that ended meanwhile reports its real outcome from its exit file, one that left no
trace is not adopted (and what is left of its group is killed first), and a pid now held by another process is
never taken for the attempt nor signalled. The journal keeps the record, also when opened from an older schema."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from collections.abc import Mapping
from pathlib import Path

import pytest

from agents.backends.base import LaunchSpec
from agents.backends.local import LocalBackend, LocalHandle
from agents.backends.localproc import identify
from agents.errors import AttemptLost
from agents.journal.sqlite import SqliteJournal
from tests.jobs import JOB_PYTHON, shared_folder
from tests.waiting import alive, eventually, eventually_async

from .conftest import backend_in
from .test_agent_local_backend import runtime_on

PY = JOB_PYTHON
# Waits for its release file (argv[1]), then exits with argv[2]; writes its pid first, and starts a child in its
# group that outlives it unless the group is killed (its pid goes to the file named by argv[3], if given).
HOLD = (
    "import os, subprocess, sys, time\n"
    "open('pid', 'w').write(str(os.getpid()))\n"
    "if len(sys.argv) > 3:\n"
    f"    child = subprocess.Popen([{PY!r}, '-c', 'import time; time.sleep(120)'])\n"
    "    open(sys.argv[3], 'w').write(str(child.pid))\n"
    "while not os.path.exists(sys.argv[1]):\n"
    "    time.sleep(0.02)\n"
    "sys.exit(int(sys.argv[2]))\n"
)


def spec(job: str, *command: str) -> LaunchSpec:
    return LaunchSpec("centre-a", job, 1, 1, "nvidia-h100", "cuda", command, (0,))


async def launched(backend: LocalBackend, groups: list[int], job: str, *args: str) -> tuple[LocalHandle, Path]:
    handle = await backend.launch(spec(job, PY, "-c", HOLD, *args))
    groups.append(handle.group)
    pid = handle.directory / "pid"  # written by the job: wait until it is there whole, not just created
    await eventually_async(lambda: pid.exists() and pid.read_text().strip().isdigit(), what="the job to start")
    return handle, handle.directory


def record(backend: LocalBackend, handle: LocalHandle) -> Mapping[str, object]:
    return dict(backend.journal_record(handle))


async def test_a_running_attempt_is_adopted_and_followed_to_its_real_exit_code(
    tmp_path: Path, groups: list[int]
) -> None:
    first = backend_in(tmp_path / "work")
    release = tmp_path / "release"
    handle, _ = await launched(first, groups, "j1", str(release), "3")
    restarted = backend_in(tmp_path / "work")  # the same site after its agent was killed
    adopted = await restarted.adopt(spec("j1", PY), record(first, handle))
    assert adopted is not None and adopted.process is None and adopted.group == handle.group
    waiting = asyncio.ensure_future(restarted.wait(adopted))
    await asyncio.sleep(0)
    assert not waiting.done()  # it still runs
    release.touch()
    status = await asyncio.wait_for(waiting, 10)
    assert (status.exit_code, status.describe()) == (3, "exited with code 3")


async def test_an_attempt_that_ended_meanwhile_reports_its_real_outcome(tmp_path: Path, groups: list[int]) -> None:
    first = backend_in(tmp_path / "work")
    release = tmp_path / "release"
    handle, folder = await launched(first, groups, "j1", str(release), "0")
    release.touch()
    await asyncio.wait_for(first.wait(handle), 10)
    adopted = await backend_in(tmp_path / "work").adopt(spec("j1", PY), record(first, handle))
    assert adopted is not None
    assert (await asyncio.wait_for(backend_in(tmp_path / "work").wait(adopted), 5)).succeeded
    # A command killed while the agent was away ended too: its wrapper recorded the signal.
    shot, folder = await launched(first, groups, "j2", str(release.with_name("never")), "0")
    os.kill(int((folder / "pid").read_text()), signal.SIGKILL)
    await asyncio.wait_for(first.wait(shot), 10)
    again = await backend_in(tmp_path / "work").adopt(spec("j2", PY), record(first, shot))
    assert again is not None
    status = await asyncio.wait_for(backend_in(tmp_path / "work").wait(again), 5)
    assert (status.exit_code, status.describe()) == (137, "killed by SIGKILL")


async def test_an_attempt_killed_with_its_wrapper_is_not_adopted_and_its_leftovers_are_killed(
    tmp_path: Path, groups: list[int]
) -> None:
    first = backend_in(tmp_path / "work")
    child_pid = shared_folder(tmp_path / "shared") / "child.pid"  # written by the job, which runs as nobody
    handle, folder = await launched(first, groups, "j1", str(tmp_path / "never"), "0", str(child_pid))
    await eventually_async(lambda: child_pid.exists() and child_pid.read_text(), what="the job's child")
    command, child = int((folder / "pid").read_text()), int(child_pid.read_text())
    os.kill(handle.group, signal.SIGKILL)  # the wrapper alone: the command and its child live on in the group
    await asyncio.wait_for(first.wait(handle), 10)
    assert alive(command) and alive(child)
    assert await backend_in(tmp_path / "work").adopt(spec("j1", PY), record(first, handle)) is None
    await eventually_async(lambda: not alive(command) and not alive(child), what="the leftovers killed")
    assert not (folder / "exit_code").exists()


async def test_an_adopted_attempt_whose_group_is_killed_unobserved_is_lost(tmp_path: Path, groups: list[int]) -> None:
    first = backend_in(tmp_path / "work")
    handle, _ = await launched(first, groups, "j1", str(tmp_path / "never"), "0")
    restarted = backend_in(tmp_path / "work")
    adopted = await restarted.adopt(spec("j1", PY), record(first, handle))
    assert adopted is not None
    waiting = asyncio.ensure_future(restarted.wait(adopted))
    os.killpg(handle.group, signal.SIGKILL)  # by someone else, not by the agent's cancel
    with pytest.raises(AttemptLost, match="without recording how"):
        await asyncio.wait_for(waiting, 10)


async def test_an_adopted_attempt_can_be_cancelled(tmp_path: Path, groups: list[int]) -> None:
    first = backend_in(tmp_path / "work")
    handle, _ = await launched(first, groups, "j1", str(tmp_path / "never"), "0")
    restarted = backend_in(tmp_path / "work")
    adopted = await restarted.adopt(spec("j1", PY), record(first, handle))
    assert adopted is not None
    await asyncio.wait_for(restarted.cancel(adopted, grace_s=2.0), 10)
    status = await asyncio.wait_for(restarted.wait(adopted), 5)
    assert (status.exit_code, status.describe()) == (143, "killed by SIGTERM")  # the wrapper recorded it


async def test_a_pid_now_held_by_another_process_is_neither_adopted_nor_signalled(
    tmp_path: Path, groups: list[int]
) -> None:
    stranger = await asyncio.create_subprocess_exec(PY, "-c", "import time; time.sleep(120)", start_new_session=True)
    groups.append(stranger.pid)
    eventually(lambda: identify(stranger.pid).start_ticks > 0, what="the stranger to start")
    real = identify(stranger.pid).to_record()
    # The journal says an attempt's wrapper had this pid, but it started at another time: the pid was reused.
    reused = {**real, "start_ticks": int(str(real["start_ticks"])) - 1}
    assert await backend_in(tmp_path / "work").adopt(spec("j1", PY), reused) is None
    rebooted = {**real, "boot_id": "another-boot"}
    assert await backend_in(tmp_path / "work").adopt(spec("j1", PY), rebooted) is None
    assert stranger.returncode is None and alive(stranger.pid)
    stranger.kill()
    await asyncio.wait_for(stranger.wait(), 5)


async def test_without_a_record_only_the_exit_file_counts(tmp_path: Path, groups: list[int]) -> None:
    first = backend_in(tmp_path / "work")
    release = tmp_path / "release"
    handle, _ = await launched(first, groups, "j1", str(release), "5")
    release.touch()
    await asyncio.wait_for(first.wait(handle), 10)
    restarted = backend_in(tmp_path / "work")
    adopted = await restarted.adopt(spec("j1", PY), {})  # a journal from before records were kept
    assert adopted is not None
    assert (await asyncio.wait_for(restarted.wait(adopted), 5)).exit_code == 5
    assert await restarted.adopt(spec("never-started", PY), {}) is None


async def test_sweep_kills_attempts_started_but_never_journaled_and_spares_journaled_ones(
    tmp_path: Path, groups: list[int]
) -> None:
    first = backend_in(tmp_path / "work")
    journaled, _ = await launched(first, groups, "j1", str(tmp_path / "never"), "0")
    unjournaled, folder = await launched(first, groups, "j2", str(tmp_path / "never"), "0")
    command = int((folder / "pid").read_text())
    await backend_in(tmp_path / "work").sweep({("j1", 1)})  # the agent died before journaling j2
    assert not alive(unjournaled.group)  # the wrapper is gone when sweep returns; its group dies of SIGKILL
    await eventually_async(lambda: not alive(command), what="the unjournaled command's death")
    assert alive(journaled.group)


async def test_a_restarted_runtime_sweeps_before_it_takes_work(tmp_path: Path, groups: list[int]) -> None:
    unjournaled, _ = await launched(backend_in(tmp_path / "work"), groups, "j1", str(tmp_path / "never"), "0")
    restarted = runtime_on(tmp_path)  # same workdir, and a journal that never heard of j1
    await restarted.restore()
    assert not alive(unjournaled.group)
    assert restarted.capacity()[0].free == 4


def test_a_journal_from_before_backend_records_opens_and_keeps_its_attempts(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE attempts (job_id TEXT NOT NULL, epoch INTEGER NOT NULL, launch TEXT NOT NULL,
            devices TEXT NOT NULL, start_time TEXT NOT NULL, PRIMARY KEY (job_id, epoch));
        INSERT INTO attempts VALUES ('j1', 1, '{"job_id": "j1", "epoch": 1, "attempt": 1,
            "accelerator_class": "nvidia-h100", "cards": 1, "command": ["x"], "stack": "", "image": "",
            "tenant": "t", "project": "p", "max_runtime_s": 0, "env": {}, "labels": {}}', '[0]',
            '2026-11-28T08:00:00+00:00');
        """
    )
    old.commit()
    old.close()
    journal = SqliteJournal(path)
    (entry,) = journal.started()
    assert (entry.key, entry.devices, dict(entry.backend_record)) == (("j1", 1), (0,), {})
    journal.record_started(type(entry)(entry.launch, entry.devices, entry.start_time, {"pid": 7}))
    journal.close()
    (reopened,) = SqliteJournal(path).started()
    assert dict(reopened.backend_record) == {"pid": 7}
