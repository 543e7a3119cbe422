"""The first job runs: the agent configs the README and policies/examples/ show accept the images of the example
jobs, judged by the agent's own terms (the check it makes on every launch), not by a copy of it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agents.core.config import AgentConfig, load_agent_config, parse_agent_config
from agents.errors import ConfigError as AgentConfigError
from fedgate.common.yaml import load_yaml
from gateway.jobs.model import JobSpec
from gateway.jobs.specfile import load_job_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_JOBS = sorted((ROOT / "examples" / "jobs").rglob("*.yaml"))
YAML_BLOCK = re.compile(r"```yaml\n(.*?)```", re.DOTALL)


def readme_agent_configs() -> list[AgentConfig]:
    """Every complete agent config (kind: Agent) among the README's YAML blocks, read as the agent reads one."""
    blocks = [b for b in YAML_BLOCK.findall((ROOT / "README.md").read_text()) if re.search(r"^kind: Agent", b, re.M)]
    doc = ROOT / "README.md"
    return [
        parse_agent_config(load_yaml(block, str(doc), error=AgentConfigError), validate_files=False) for block in blocks
    ]


def tour_configs() -> list[tuple[str, AgentConfig]]:
    examples = sorted((ROOT / "policies" / "examples").glob("*.agent.yaml"))
    found = [(f"README.md block {i}", c) for i, c in enumerate(readme_agent_configs())]
    return found + [(p.name, load_agent_config(p, validate_files=False)) for p in examples]


def test_the_readme_has_the_operator_tour_agent_config() -> None:
    [config] = readme_agent_configs()
    assert config.site == "centre-a" and config.policy.image_registries


@pytest.mark.parametrize("job_file", EXAMPLE_JOBS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_image_is_from_a_registry_the_tour_agents_accept(job_file: Path) -> None:
    job: JobSpec = load_job_spec(job_file)
    for name, config in tour_configs():
        terms = config.policy.terms
        for run in job.runs:
            if not run.image:
                # A bare command runs whatever the machine has: a centre that lists registries refuses it, so
                # the example must say it needs a centre without image_registries.
                assert "image_registries" in job_file.read_text(), f"{job_file.name}: say it needs such a centre"
                continue
            refusal = terms.judge(tenant=job.tenant, project=job.project, cards=1, image=run.image)
            assert refusal is None or refusal.term != "image_registries", f"{name}: {refusal}"
