"""The job file format: every example parses, specs round-trip, and each kind of mistake is named."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedgate.common.yaml import dump_yaml
from gateway.errors import ConfigError, InvalidArgument
from gateway.jobs.model import Capability, JobSpec, Resources, StackRun, Topology
from gateway.jobs.specfile import format_duration, load_job_spec, parse_duration, parse_job_spec, spec_to_dict

EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "jobs").glob("*.yaml"))

BRIEF_EXAMPLE = """\
apiVersion: fedgate.io/v1
kind: Job
metadata:
  name: llama-sft
  tenant: deepsea-ai
  project: llama-sft
  labels: {team: post-training}
spec:
  resources:
    class: ascend-910b        # or: capability: {min_memory_gib: 64, stacks: [cuda, cann]}
    cards: 4
  runs:                       # one per software stack the job supports
    - stack: cann
      image: registry.example/llama-sft:cann8
      command: [python, train.py, --config, sft.yaml]
    - stack: cuda
      command: [python, train.py]
  maxRuntime: 2h
  env: {HF_HUB_OFFLINE: "1"}
  priorityClass: normal
"""

HEAD = "apiVersion: fedgate.io/v1\nkind: Job\nmetadata: {tenant: deepsea-ai, project: llama-sft}\n"


def _job(spec_body: str) -> str:
    """A job file whose `spec:` block is `spec_body` (indented two spaces); the spec starts on line 4."""
    return HEAD + "spec:\n" + "".join(f"  {line}\n" for line in spec_body.strip("\n").splitlines())


RUNS = "runs: [{command: [python3, train.py]}]"


def _refused(text: str) -> str:
    with pytest.raises(ConfigError) as refused:
        parse_job_spec(text, "job.yaml")
    return refused.value.message


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_parses_and_round_trips(path: Path) -> None:
    spec = load_job_spec(path)
    assert spec.tenant in {"deepsea-ai", "panda-lm"}
    assert all(run.command[:2] == ("python3", "-c") for run in spec.runs)
    assert all("FEDGATE_JOB_ID" in run.command[2] for run in spec.runs)
    assert parse_job_spec(dump_yaml(spec_to_dict(spec))) == spec


def test_the_format_as_documented_parses() -> None:
    spec = parse_job_spec(BRIEF_EXAMPLE)
    assert spec == JobSpec(
        tenant="deepsea-ai",
        project="llama-sft",
        name="llama-sft",
        labels=(("team", "post-training"),),
        resources=Resources(accelerator_class="ascend-910b", cards=4),
        runs=(
            StackRun("cann", "registry.example/llama-sft:cann8", ("python", "train.py", "--config", "sft.yaml")),
            StackRun("cuda", "", ("python", "train.py")),
        ),
        max_runtime=timedelta(hours=2),
        env=(("HF_HUB_OFFLINE", "1"),),
        priority_class="normal",
    )


def test_capability_and_topology_parse() -> None:
    spec = parse_job_spec(
        _job(
            """
resources:
  capability: {min_memory_gib: 64, min_bf16_tflops: 300.5, stacks: [cuda, cann]}
  cards: 8
topology: {max_sites: 2, min_cards_per_site: 4}
runs: [{stack: cuda, command: [a]}, {stack: cann, image: img}]
"""
        )
    )
    assert spec.resources == Resources(capability=Capability(64.0, 300.5, ("cuda", "cann")), cards=8)
    assert spec.topology == Topology(max_sites=2, min_cards_per_site=4)
    assert spec.max_runtime == timedelta(hours=1)  # the default


def test_default_tenant_fills_a_missing_tenant_only() -> None:
    text = (
        "apiVersion: fedgate.io/v1\nkind: Job\nmetadata: {project: eval}\n"
        f"spec:\n  resources: {{class: x, cards: 1}}\n  {RUNS}"
    )
    assert parse_job_spec(text, default_tenant="panda-lm").tenant == "panda-lm"
    assert "missing required key 'tenant'" in _refused(text)
    assert parse_job_spec(_job(f"resources: {{class: x, cards: 1}}\n{RUNS}"), default_tenant="x").tenant == "deepsea-ai"


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ("resources: {class: x, cards: 0}\n" + RUNS, 5, "must be at least 1"),
        ("resources: {class: x, cards: '4'}\n" + RUNS, 5, "must be an integer"),
        ("resources: {class: x, cards: true}\n" + RUNS, 5, "must be an integer"),
        ("resources: {cards: 1}\n" + RUNS, 5, "exactly one of class and capability"),
        ("resources: {class: x, capability: {stacks: [cuda]}, cards: 1}\n" + RUNS, 5, "exactly one of"),
        ("resources: {capability: {}, cards: 1}\n" + RUNS, 5, "empty capability"),
        ("resources: {capability: {min_memory_gib: -1}, cards: 1}\n" + RUNS, 5, "at least 0"),
        ("resources: {capability: {stacks: cuda}, cards: 1}\n" + RUNS, 5, "must be a list"),
        ("resources: {capability: {stacks: [cuda, cuda]}, cards: 1}\n" + RUNS, 5, "lists a stack twice"),
        (
            "resources: {capability: {stacks: [cuda, dtk]}, cards: 1}\nruns: [{stack: cuda, command: [a]}]",
            5,
            "no run for it",
        ),
        ("resources: {class: Ascend910B, cards: 1}\n" + RUNS, 5, "is not valid"),
        ("resource: {class: x, cards: 1}\n" + RUNS, 5, "Did you mean 'resources'?"),
        ("resources: {class: x, cards: 1}\nruns: []", 6, "at least one run"),
        ("resources: {class: x, cards: 1}\nruns:\n  - {stack: cuda}", 7, "neither a command nor an image"),
        ("resources: {class: x, cards: 1}\nruns:\n  - {command: python train.py}", 7, "must be a list"),
        ("resources: {class: x, cards: 1}\nruns:\n  - {command: []}", 7, "is empty"),
        (
            "resources: {class: x, cards: 1}\nruns:\n  - {command: [a]}\n  - {command: [b]}",
            8,
            "appears twice",
        ),
        ("resources: {class: x, cards: 1}\nruns:\n  - {command: [a], shell: bash}", 7, "unknown key 'shell'"),
        ("resources: {class: x, cards: 1}\nruns:\n  - {image: 'has space'}", 7, "no spaces"),
        ("resources: {class: x, cards: 1}\n" + RUNS + "\nmaxRuntime: 0s", 7, "more than 0"),
        ("resources: {class: x, cards: 1}\n" + RUNS + "\nmaxRuntime: 31d", 7, "at most 30d"),
        ("resources: {class: x, cards: 1}\n" + RUNS + "\nmaxRuntime: 1.5h", 7, "is not a duration"),
        ("resources: {class: x, cards: 1}\n" + RUNS + "\nmaxRuntime: soon", 7, "is not a duration"),
        ("resources: {class: x, cards: 1}\n" + RUNS + "\nenv: {HF_HUB_OFFLINE: 1}", 7, 'Quote it: "1"'),
        ("resources: {class: x, cards: 1}\n" + RUNS + "\nenv: {DEBUG: true}", 7, 'Quote it: "true"'),
        ("resources: {class: x, cards: 1}\n" + RUNS + "\nenv: {BAD-NAME: x}", 7, "is not valid"),
        ("resources: {class: x, cards: 1}\n" + RUNS + "\npriorityClass: 3", 7, "must be a string"),
        (
            "resources: {class: x, cards: 2}\n" + RUNS + "\ntopology: {max_sites: 2, min_cards_per_site: 3}",
            7,
            "more than",
        ),
        ("resources: {class: x, cards: 2}\n" + RUNS + "\ntopology: {max_sites: 0}", 7, "at least 1"),
        (
            "resources: {class: x, cards: 1}\n" + RUNS + "\nresources: {class: y, cards: 1}",
            7,
            "duplicate key",
        ),
    ],
)
def test_bad_spec_is_refused_naming_file_line_and_problem(body: str, line: int, words: str) -> None:
    message = _refused(_job(body))
    assert message.startswith(f"job.yaml:{line}:"), message
    assert words in message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "the file is empty"),
        ("- a\n- b\n", "must be a mapping"),
        ("kind: Job\n", "missing required key 'apiVersion'"),
        ("apiVersion: fedgate.io/v2\nkind: Job\n", "Use fedgate.io/v1"),
        ("apiVersion: fedgate.io/v1\nkind: Federation\n", "Use kind: Job"),
        (
            "apiVersion: fedgate.io/v1\nkind: Job\nmetadata: {tenant: a, project: b}\n",
            "missing required key 'spec'",
        ),
        (
            "apiVersion: fedgate.io/v1\nkind: Job\nmetadata: {tenant: Big, project: b}\nspec: {}\n",
            "lowercase",
        ),
        ("apiVersion: fedgate.io/v1\nkind: Job\nmetadata: {tenant: a}\nspec: {}\n", "'project'"),
        (
            "apiVersion: fedgate.io/v1\nkind: Job\nmetadata: {tenant: a, project: b, labels: {k: 1}}\nspec: {}\n",
            "Quote",
        ),
        ("apiVersion: fedgate.io/v1\nkind: Job\nstatus: {}\n", "unknown key 'status'"),
    ],
)
def test_bad_header_or_metadata_is_refused(text: str, words: str) -> None:
    assert words in _refused(text)


def test_errors_from_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(_job("resources: {class: x, cards: 0}\n" + RUNS))
    with pytest.raises(ConfigError, match=rf"^{path}:5: spec\.resources\.cards"):
        load_job_spec(path)


# ---- durations ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("10m", 600),
        ("2h", 7200),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1d2h3m4s", 93784),
        ("3600", 3600),
        (45, 45),
        ("0s", 0),
    ],
)
def test_parse_duration(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "h", "1.5h", "30m2h", "-5s", -5, "5 m", "1w", True, 2.5, "1h 30m"])
def test_parse_duration_refuses_what_it_does_not_know(text: object) -> None:
    with pytest.raises(InvalidArgument, match="is not a duration"):
        parse_duration(text)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**8))
def test_format_duration_is_the_inverse_of_parse_duration(seconds: int) -> None:
    assert parse_duration(format_duration(timedelta(seconds=seconds))) == timedelta(seconds=seconds)


def test_format_duration_reads_naturally() -> None:
    assert format_duration(timedelta(minutes=90)) == "1h30m"
    assert format_duration(timedelta(0)) == "0s"


# ---- spec_to_dict -------------------------------------------------------------------------------------

names = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?\Z")
stacks = st.lists(st.sampled_from(["cuda", "cann", "dtk", "neuware"]), min_size=1, max_size=3, unique=True)


@st.composite
def specs(draw: st.DrawFn) -> JobSpec:
    run_stacks = draw(stacks)
    runs = tuple(
        StackRun(stack, draw(st.sampled_from(["", "img:1"])), tuple(draw(st.lists(names, min_size=1, max_size=3))))
        for stack in run_stacks
    )
    cards = draw(st.integers(1, 512))
    if draw(st.booleans()):
        resources = Resources(accelerator_class=draw(names), cards=cards)
    else:
        memory = float(draw(st.integers(1, 192)))
        resources = Resources(
            capability=Capability(memory, draw(st.sampled_from([0.0, 312.5])), tuple(run_stacks)), cards=cards
        )
    text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8)
    return JobSpec(
        tenant=draw(names),
        project=draw(names),
        name=draw(st.sampled_from(["", "a-job"])),
        resources=resources,
        runs=runs,
        max_runtime=timedelta(seconds=draw(st.integers(1, 30 * 86400))),
        labels=tuple(sorted(draw(st.dictionaries(names, text, max_size=2)).items())),
        env=tuple(sorted(draw(st.dictionaries(st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,8}\Z"), text, max_size=2)).items())),
        priority_class=draw(st.sampled_from(["", "high"])),
        topology=draw(st.sampled_from([Topology(), Topology(2, 1)])),
    )


@given(specs())
def test_spec_to_dict_round_trips_through_yaml(spec: JobSpec) -> None:
    assert parse_job_spec(dump_yaml(spec_to_dict(spec))) == spec


def test_spec_to_dict_leaves_defaults_out() -> None:
    data = spec_to_dict(parse_job_spec(_job(f"resources: {{class: x, cards: 1}}\n{RUNS}")))
    assert data == {
        "apiVersion": "fedgate.io/v1",
        "kind": "Job",
        "metadata": {"tenant": "deepsea-ai", "project": "llama-sft"},
        "spec": {
            "resources": {"class": "x", "cards": 1},
            "runs": [{"command": ["python3", "train.py"]}],
            "maxRuntime": "1h",
        },
    }
