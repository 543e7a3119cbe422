"""Command output: tables for people, JSON and YAML for scripts, and the rows of the common views."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from gateway.cli import output
from gateway.jobs.model import Capability, Job, JobSpec, JobState, Placement, Reason, Resources, StackRun
from gateway.placement.place import Candidate
from gateway.sites.model import Pool, SiteView

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
COLUMNS = [("name", "NAME"), ("cards", "CARDS"), ("sites", "SITES")]
ROWS = [
    {"name": "llama-sft", "cards": 4, "sites": ["alpha", "beta"], "created": NOW},
    {"name": "x", "cards": 128, "sites": [], "created": NOW - timedelta(minutes=5)},
]


def _spec(**resources: object) -> JobSpec:
    return JobSpec(
        tenant="deepsea-ai",
        project="llama-sft",
        name="sft",
        resources=Resources(**resources),  # type: ignore[arg-type]
        runs=(StackRun("cann", "", ("python3",)),),
    )


def _job(**changes: object) -> Job:
    job = Job(
        job_id="job-1",
        spec=_spec(accelerator_class="ascend-910b", cards=4),
        state=JobState.RUNNING,
        create_time=NOW - timedelta(hours=2, minutes=5, seconds=7),
        update_time=NOW,
        attempt=1,
        placements=(Placement("alpha", "ascend-910b", 4),),
        reasons=(Reason("policy", "ADMITTED", "ok"), Reason("site", "STARTED", "running on alpha", "alpha")),
        start_time=NOW - timedelta(minutes=3),
    )
    return job.evolve(**changes)


def test_table_aligns_columns_under_headers() -> None:
    assert output.render(ROWS, COLUMNS, "table").splitlines() == [
        "NAME       CARDS  SITES",
        "llama-sft  4      alpha,beta",
        "x          128    -",
    ]


def test_table_of_nothing_is_just_the_header() -> None:
    assert output.render([], COLUMNS, "table") == "NAME  CARDS  SITES"


def test_table_aligns_wide_characters_by_display_width() -> None:
    lines = output.render([{"a": "北京", "b": 1}, {"a": "xy", "b": 2}], [("a", "A"), ("b", "B")], "table").splitlines()
    assert lines == ["A     B", "北京  1", "xy    2"]  # 北京 is four columns wide on a terminal


def test_json_carries_whole_rows_with_iso_times() -> None:
    data = json.loads(output.render(ROWS, COLUMNS, "json"))
    assert data[0] == {
        "name": "llama-sft",
        "cards": 4,
        "sites": ["alpha", "beta"],
        "created": "2026-05-01T12:00:00Z",
    }
    assert data[1]["created"] == "2026-05-01T11:55:00Z"


def test_json_is_indented_by_two() -> None:
    assert output.render([{"a": 1}], [("a", "A")], "json") == '[\n  {\n    "a": 1\n  }\n]'


def test_yaml_is_block_style_and_means_the_same_as_json() -> None:
    text = output.render(ROWS, COLUMNS, "yaml")
    assert "{" not in text and text.startswith("- name: llama-sft")
    assert yaml.safe_load(text) == json.loads(output.render(ROWS, COLUMNS, "json"))


def test_yaml_keeps_strings_that_look_like_booleans_as_strings() -> None:
    assert yaml.safe_load(output.render([{"country": "NO"}], [], "yaml")) == [{"country": "NO"}]


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="valid formats: table, json, yaml"):
        output.render(ROWS, COLUMNS, "xml")


def test_output_flag_defaults_to_table_and_knows_three_formats() -> None:
    parser = argparse.ArgumentParser()
    output.add_output_flag(parser)
    assert parser.parse_args([]).output == "table"
    assert parser.parse_args(["-o", "yaml"]).output == "yaml"
    assert parser.parse_args(["--output", "json"]).output == "json"
    with pytest.raises(SystemExit):
        parser.parse_args(["-o", "xml"])


def test_record_renders_as_key_value_lines_or_an_object() -> None:
    record = {"identity": "spiffe://demo/site/a", "not_after": NOW, "ok": True}
    assert output.render_record(record, "table").splitlines() == [
        "identity:  spiffe://demo/site/a",
        "not_after: 2026-05-01 12:00:00",
        "ok:        yes",
    ]
    assert json.loads(output.render_record(record, "json"))["not_after"] == "2026-05-01T12:00:00Z"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "-"),
        ("", "-"),
        ([], "-"),
        (True, "yes"),
        (2.50, "2.5"),
        (timedelta(minutes=90), "1h30m"),
        (JobState.QUEUED, "QUEUED"),
        ({"a": 1}, "a=1"),
        ("two\nlines", "two lines"),
    ],
)
def test_cells(value: object, text: str) -> None:
    assert output.cell(value) == text


def test_job_row_shows_placement_age_duration_and_last_reason() -> None:
    row = output.job_row(_job(), now=NOW)
    assert {
        k: row[k] for k in ("job_id", "tenant", "project", "name", "state", "attempt", "sites", "class", "cards")
    } == {
        "job_id": "job-1",
        "tenant": "deepsea-ai",
        "project": "llama-sft",
        "name": "sft",
        "state": "RUNNING",
        "attempt": 1,
        "sites": ["alpha"],
        "class": "ascend-910b",
        "cards": 4,
    }
    assert (row["age"], row["duration"], row["reason"]) == ("2h5m", "3m", "running on alpha")
    assert [r["code"] for r in row["reasons"]] == ["ADMITTED", "STARTED"]
    json.loads(output.render([row], [], "json"))  # every value is serialisable


def test_job_row_of_a_queued_capability_job() -> None:
    spec = _spec(capability=Capability(min_memory_gib=64, stacks=("cuda", "dtk")), cards=1)
    job = _job(spec=spec, state=JobState.QUEUED, placements=(), reasons=(), start_time=None)
    row = output.job_row(job, now=NOW)
    assert (row["class"], row["sites"], row["duration"], row["reason"]) == (">=64GiB cuda|dtk", [], "", "")
    assert "-" in output.render([row], [("duration", "DURATION")], "table")


def test_job_row_duration_of_a_finished_job_stops_at_its_end() -> None:
    job = _job(
        state=JobState.SUCCEEDED,
        end_time=NOW - timedelta(minutes=1),
        start_time=NOW - timedelta(minutes=2, seconds=30),
    )
    assert output.job_row(job, now=NOW)["duration"] == "1m30s"


def test_job_row_accepts_naive_utc_times() -> None:
    job = _job(create_time=datetime(2026, 5, 1, 11, 0, 0), start_time=None)
    assert output.job_row(job, now=NOW)["age"] == "1h"


def test_site_rows_one_per_pool_with_free_cards_net_of_leases() -> None:
    site = SiteView(
        name="alpha",
        connected=True,
        draining=False,
        pools=(
            Pool("ascend-910b", total=64, offered=32, free=30, cards_per_node=8),
            Pool("hygon-k100", 16, 16, 16),
        ),
        leased=(("ascend-910b", 8),),
        agent_version="0.1.0",
    )
    rows = output.site_rows(site)
    assert [(r["class"], r["total"], r["offered"], r["leased"], r["free"]) for r in rows] == [
        ("ascend-910b", 64, 32, 8, 24),
        ("hygon-k100", 16, 16, 0, 16),
    ]
    assert {r["state"] for r in rows} == {"ready"}


@pytest.mark.parametrize(("connected", "draining", "state"), [(False, False, "offline"), (True, True, "draining")])
def test_site_rows_of_a_site_without_pools(connected: bool, draining: bool, state: str) -> None:
    rows = output.site_rows(SiteView("beta", connected, draining, ()))
    assert len(rows) == 1 and rows[0]["state"] == state and rows[0]["class"] == ""


@dataclass(frozen=True)
class _Explanation:
    admitted: bool
    reasons: tuple[Reason, ...]
    candidates: tuple[Candidate, ...]
    policy_version: str


EXPLANATION = _Explanation(
    True,
    (Reason("policy", "ADMITTED", "tenant deepsea-ai/llama-sft may run on: ascend-910b"),),
    (
        Candidate("alpha", True, 0.9, "ascend-910b"),
        Candidate("beta", False, reasons=(Reason("capacity", "NO_FREE_CARDS", "2 of 4 cards free", "beta"),)),
    ),
    "0123456789abcdef",
)


def test_explanation_as_a_table() -> None:
    text = output.render_explanation(EXPLANATION, "table")
    assert text.splitlines()[0] == "admitted (policy 0123456789ab)"
    assert "STAGE   CODE      SITE  MESSAGE" in text
    assert "beta   no        0      -            2 of 4 cards free" in text


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_explanation_for_scripts(fmt: str) -> None:
    text = output.render_explanation(EXPLANATION, fmt)
    data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    assert data["admitted"] is True
    assert data["candidates"][1]["reasons"][0]["code"] == "NO_FREE_CARDS"
