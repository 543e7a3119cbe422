"""The import contracts cover a module written tomorrow: a throw-away module in a copy of the tree breaks them.

Each case copies the packages and pyproject.toml into a temporary directory, adds one module that breaks a
house rule, and runs `lint-imports` over the copy (the copy comes first on PYTHONPATH). The unmodified copy must
pass, so a failure is the new module's doing, and the output must name the contract it broke.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    for package in ("gateway", "agents"):
        shutil.copytree(ROOT / package, root / package, ignore=IGNORE)
    shutil.copytree(ROOT / "proto" / "fedgate", root / "proto" / "fedgate", ignore=IGNORE)
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'proto'}"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_tree_as_it_is_keeps_every_contract(tree: Path) -> None:
    done = lint(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "broken" not in done.stdout.lower().replace("0 broken", "")


@pytest.mark.parametrize(
    ("module", "source", "contract"),
    [
        ("gateway/scheduler/probe.py", "import grpc\n", "gateway: only transport speaks gRPC and protobuf"),
        ("gateway/jobs/probe.py", "from fedgate.v1 import job_pb2\n", "gateway: only transport speaks gRPC"),
        ("agents/core/probe.py", "import grpc\n", "agents: only transport speaks gRPC and protobuf"),
        ("gateway/placement/probe.py", "import sqlite3\n", "are pure: no I/O, no other layers"),
        ("gateway/placement/probe.py", "from gateway.store import open_store\n", "are pure: no I/O, no other layers"),
        ("agents/core/probe.py", "from gateway.jobs.model import Job\n", "gateway and agents never import each other"),
        ("proto/fedgate/common/probe.py", "import agents\n", "the shared rules (fedgate.common) belong to neither"),
        ("agents/policy/probe.py", "import kubernetes\n", "only the kubernetes backend's API layer"),
        ("proto/fedgate/common/probe.py", "import grpc\n", "fedgate.common's rules are plain Python"),
        ("gateway/jobs/probe.py", "from gateway.app import compose\n", "gateway: layers by folder"),
        ("gateway/probe.py", "", "gateway: layers by folder"),  # a new top-level module must be placed
        ("agents/core/probe.py", "from agents.transport import session\n", "agents: layers by folder"),
        ("agents/probe.py", "", "agents: layers by folder"),
    ],
)
def test_a_new_module_that_breaks_a_rule_fails_lint(tree: Path, module: str, source: str, contract: str) -> None:
    probe = tree / module
    probe.write_text(f'"""A throw-away module that breaks a house rule."""\n\n{source}')
    try:
        done = lint(tree)
    finally:
        probe.unlink()
    assert done.returncode != 0, f"{module} importing {source.strip()!r} passed lint-imports:\n{done.stdout}"
    broken = done.stdout[done.stdout.find("Broken contracts") :]
    assert contract in " ".join(broken.split()), done.stdout
