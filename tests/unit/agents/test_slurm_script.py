"""The Slurm batch script a site agent writes: the job's environment cannot add a line of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.backends.base import LaunchSpec
from agents.backends.slurm.job import batch_script, unusable_env_names


def launch(env: dict[str, str]) -> LaunchSpec:
    return LaunchSpec("centre-a", "job-1", 1, 1, "nvidia-h100", "cuda", ("python3", "train.py"), (0,), env=env)


def test_an_env_name_with_a_trailing_newline_is_unusable() -> None:
    # `$` matches before a final newline: `FOO\n` once passed and wrote `export FOO` + a line `=<value>`.
    assert unusable_env_names({"FOO\n": "x", "A=B": "y", "1X": "z", "GOOD_NAME": "v"}) == ["1X", "A=B", "FOO\n"]


def test_the_script_refuses_an_env_name_that_would_start_a_line_and_quotes_every_value() -> None:
    with pytest.raises(ValueError, match="cannot be exported"):
        batch_script(launch({"FOO\n": "touch /tmp/pwned"}), Path("/work/job-1/1"))
    script = batch_script(launch({"TOKEN": "a'b\nrm -rf /"}), Path("/work/job-1/1"))
    exports = [line for line in script.splitlines() if line.startswith("export TOKEN=")]
    assert exports == ["export TOKEN='a'\"'\"'b"]  # the value's newline stays inside the quotes
    assert "\nrm -rf /'" in script
