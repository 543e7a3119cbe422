"""`fedgate demo` as a user runs it: real processes, real mTLS, real jobs; and it cleans up after itself."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def test_demo_stops_every_process_it_started_on_interrupt() -> None:
    demo = subprocess.Popen(fedgate("demo"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert demo.stdout is not None
    started: set[int] = set()
    deadline = time.monotonic() + 60
    for line in demo.stdout:  # wait until the federation is up and jobs are submitted
        started |= children_of(demo.pid)
        if line.startswith("submitted") or time.monotonic() > deadline:
            break
    started |= children_of(demo.pid)
    assert len(started) >= 4, "expected a gateway and three agents"
    demo.send_signal(signal.SIGINT)
    demo.communicate(timeout=30)
    assert demo.returncode == 130
    for pid in started:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"process {pid} outlived the demo"


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
