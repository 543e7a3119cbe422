"""`fedgate demo` as a user runs it: real processes, real mTLS, real jobs; and it cleans up after itself."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import pytest

from tests.pgserver import PgServer
from tests.waiting import alive

LAST_LINE = re.compile(r"^demo: (\d+)/(\d+) jobs succeeded across (\d+) sites in (\d+(?:\.\d+)?)s$")


def fedgate(*args: str) -> list[str]:
    return [sys.executable, "-m", "fedgate.cli", *args]


def children_of(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def test_demo_runs_every_job_to_success_across_three_sites() -> None:
    result = subprocess.run(fedgate("demo"), capture_output=True, text=True, timeout=120, check=False)
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    match = LAST_LINE.match(lines[-1])
    assert match, f"last line was {lines[-1]!r}"
    succeeded, total, sites, _ = match.groups()
    assert succeeded == total and int(total) >= 8
    assert sites == "3"
    assert "RAN AT" in result.stdout  # the table of where each job ran and why
    # The two-node job ran one task per node, and both met at rank 0's master over TCP.
    assert "centre-a (16 x ascend-910b on 2 nodes)" in result.stdout
    assert "node 0 of 2: world agreed" in result.stdout and "node 1 of 2: world agreed" in result.stdout


@pytest.mark.services
def test_demo_with_a_standby_survives_kill_9_of_its_leader(pg_server: PgServer) -> None:
    """`fedgate demo --standby`: two gateways on one PostgreSQL (here the session's test server), the leader
    killed with -9 while jobs run; the standby takes over and every job still succeeds."""
    result = subprocess.run(
        fedgate("demo", "--standby", "--store", pg_server.create_database(), "--timeout", "90"),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(line.startswith("2 gateways of federation 'demo' on one PostgreSQL") for line in lines)
    assert any(line.startswith("killed the leader (gateway-a) with SIGKILL") for line in lines)
    assert any(line.startswith("the standby took over: it leads") for line in lines)
    match = LAST_LINE.match(lines[-1])
    assert match, f"last line was {lines[-1]!r}"
    succeeded, total, sites, _ = match.groups()
    assert succeeded == total and int(total) >= 8 and sites == "3"


def test_demo_stops_every_process_it_started_on_interrupt() -> None:
    demo = subprocess.Popen(fedgate("demo"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert demo.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()  # read aside, so that every wait below is bounded
    threading.Thread(target=_read_lines, args=(demo.stdout, lines), daemon=True).start()
    seen: list[str] = []
    try:
        # The federation is up (a gateway, three agents) and jobs run: the demo says so before its first
        # progress line. Generous for a loaded machine, yet bounded.
        while not any(line.startswith("submitted") for line in seen):
            try:
                line = lines.get(timeout=DEMO_STEP_S)
            except queue.Empty:
                raise AssertionError(f"the demo said nothing for {DEMO_STEP_S}s:\n" + "".join(seen)) from None
            assert line is not None, "the demo ended before it submitted its jobs:\n" + "".join(seen)
            seen.append(line)
        started = children_of(demo.pid)
        assert len(started) >= 4, f"expected a gateway and three agents, found {sorted(started)}"
        assert demo.poll() is None, "the demo ended before it could be interrupted:\n" + "".join(seen)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=DEMO_STEP_S) == 130, "".join(seen)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    # It waited for every child it stopped (killing what outlived its grace): none is left, not even a zombie.
    outlived = [pid for pid in started if alive(pid)]
    assert not outlived, f"processes {outlived} outlived the demo"


DEMO_STEP_S = 120
"""The bound on each wait for the demo (to come up, to stop): minutes on a busy machine, never for ever."""


def _read_lines(stream: IO[str], into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line)
    into.put(None)
