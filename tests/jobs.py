"""What a test job may run and where it may write, now that the local backend runs jobs as an unprivileged user
(`nobody` when the tests run as root, as here and in CI).

Owns: `JOB_PYTHON` (a python3 the job user can execute: the tests' own interpreter may sit under a folder only
root can enter), `reachable` (lets the job user traverse the folders above an agent's workdir, which pytest
creates readable by its owner only) and `shared_folder` (a world-writable folder for a job's marker or gate
files). It does not start agents (tests/integration/harness.py does).
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

from agents.backends.localguard import SAFE_PATH

JOB_PYTHON = (shutil.which("python3", path=SAFE_PATH) or sys.executable) if os.geteuid() == 0 else sys.executable
"""The python a job's command runs: the system's when jobs run as another user than the tests."""


def reachable(path: Path) -> Path:
    """Let every user traverse (not list) the folders above `path` and `path` itself; returns `path`."""
    path.mkdir(parents=True, exist_ok=True)
    for folder in (path, *path.parents):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH | stat.S_IXGRP)
    return path


def shared_folder(path: Path) -> Path:
    """A folder every user may write in (sticky, like /tmp), reachable by the job user; returns it."""
    reachable(path)
    path.chmod(0o1777)
    return path
