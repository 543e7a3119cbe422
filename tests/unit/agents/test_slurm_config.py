"""The slurm backend's options in the agent YAML, its built-in gres table against the accelerator catalogue,
and what an attempt looks like to Slurm (job name, batch script, sbatch arguments)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from agents.backends.base import LaunchSpec
from agents.backends.slurm.config import DEFAULT_GRES_CLASSES, SlurmOptions
from agents.backends.slurm.job import batch_script, job_name, sbatch_arguments
from agents.core.config import AgentConfig, parse_agent_config
from agents.errors import ConfigError
from fedgate.common.yaml import load_yaml

CATALOGUE = Path(__file__).resolve().parents[3] / "policies" / "accelerators.yaml"

HEAD = """\
apiVersion: fedgate.io/v1
kind: Agent
site: centre-s
gateway: 127.0.0.1:7443
tls: {ca: ca.pem, cert: cert.pem, key: key.pem}
pools:
  - {class: nvidia-h100, cards: 8}
backend:
  type: slurm
"""


def load(backend_lines: str, tmp_path: Path) -> AgentConfig:
    source = tmp_path / "agent.yaml"
    source.write_text(HEAD + backend_lines)
    return parse_agent_config(load_yaml(source, error=ConfigError), validate_files=False)


def error(backend_lines: str, tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load(backend_lines, tmp_path)
    return caught.value.message


def test_slurm_options_are_read_with_paths_against_the_config_folder(tmp_path: Path) -> None:
    config = load(
        "  partition: gpu\n  account: proj-ai\n  slurm_conf: etc/slurm.conf\n  workdir: /shared/fedgate\n"
        "  gres: {V100: nvidia-v100, h100: nvidia-h100-custom}\n  poll_interval_s: 0.5\n",
        tmp_path,
    )
    options = config.backend.options
    assert isinstance(options, SlurmOptions)
    assert (options.partition, options.account, options.poll_interval_s) == ("gpu", "proj-ai", 0.5)
    assert options.slurm_conf == tmp_path / "etc" / "slurm.conf"
    assert config.backend.workdir == Path("/shared/fedgate")
    assert options.gres_classes["v100"] == "nvidia-v100", "gres types are matched in lower case"
    assert options.gres_classes["h100"] == "nvidia-h100-custom", "the operator's entry wins"
    assert options.gres_classes["910b"] == "ascend-910b", "the built-in table stays underneath"


def test_defaults_leave_account_and_slurm_conf_to_slurm(tmp_path: Path) -> None:
    options = load("  partition: gpu\n", tmp_path).backend.options
    assert options == SlurmOptions(partition="gpu")


def test_a_missing_partition_is_named(tmp_path: Path) -> None:
    message = error("  account: x\n", tmp_path)
    assert "missing key 'backend.partition'" in message and "agent.yaml:" in message


@pytest.mark.parametrize(
    ("lines", "line", "words"),
    [
        ("  partition: 'gpu; rm -rf /'\n", 10, "not a Slurm partition name"),
        ("  partition: gpu\n  gres: {h100: NVIDIA H100}\n", 11, "not a catalogue class"),
        ("  partition: gpu\n  poll_interval_s: 0\n", 11, "greater than 0"),
        ("  partition: gpu\n  partiton: cpu\n", 11, "did you mean 'partition'?"),
    ],
)
def test_bad_options_fail_naming_file_line_and_fix(tmp_path: Path, lines: str, line: int, words: str) -> None:
    message = error(lines, tmp_path)
    assert f"agent.yaml:{line}:" in message and words in message


def test_the_built_in_gres_table_agrees_with_the_accelerator_catalogue() -> None:
    catalogue = yaml.safe_load(CATALOGUE.read_text())["accelerators"]
    from_yaml = {name.lower(): entry["id"] for entry in catalogue for name in entry.get("slurm_gres", [])}
    assert dict(DEFAULT_GRES_CLASSES) == from_yaml


def spec(**changes: object) -> LaunchSpec:
    fields: dict[str, object] = {
        "site": "centre-s",
        "job_id": "job-7",
        "epoch": 2,
        "attempt": 1,
        "accelerator_class": "nvidia-h100",
        "stack": "cuda",
        "command": ("python3", "-c", "print('it''s $HOME')"),
        "devices": (0, 1),
        "env": {"FEDGATE_SITE": "spoofed", "QUOTED": "a 'b' $c"},
    }
    fields.update(changes)
    return LaunchSpec(**fields)  # type: ignore[arg-type]


def test_the_batch_script_exports_env_then_fedgate_and_execs_the_command(tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text(
        batch_script(spec(command=("sh", "-c", 'echo "$QUOTED|$FEDGATE_SITE|$FEDGATE_DEVICES|$0"')), tmp_path)
    )
    done = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=False)
    assert done.stdout == "a 'b' $c|centre-s|0,1|sh\n", "job env is literal and FEDGATE_* cannot be overridden"
    missing = tmp_path / "missing.sh"
    missing.write_text(batch_script(spec(command=("no-such-tool", "x")), tmp_path))
    done = subprocess.run(["sh", str(missing)], capture_output=True, text=True, check=False)
    assert done.returncode == 127 and "no-such-tool was not found" in done.stderr


def test_sbatch_arguments_carry_name_gres_time_folder_and_account() -> None:
    options = SlurmOptions(partition="gpu", account="proj-ai")
    args = sbatch_arguments(spec(max_runtime_s=90), options, "gpu:h100:2", Path("/w/job-7/2"))
    assert args[:2] == ["sbatch", "--parsable"] and args[-1] == "/w/job-7/2/job.sh"
    for expected in (
        f"--job-name={job_name('job-7', 2)}",
        "--partition=gpu",
        "--account=proj-ai",
        "--gres=gpu:h100:2",
        "--time=3",  # 90 s -> 2 minutes, plus one so the agent's own limit fires first
        "--chdir=/w/job-7/2",
        "--output=/w/job-7/2/output.log",
        "--no-requeue",
    ):
        assert expected in args
    bare = sbatch_arguments(spec(), SlurmOptions(partition="gpu"), "", Path("/w"))
    assert not any(a.startswith(("--time", "--gres", "--account")) for a in bare)
    assert job_name("job-7", 2) == "fedgate.job-7.2"
