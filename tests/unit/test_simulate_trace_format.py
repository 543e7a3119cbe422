"""The trace format of issue 17: old six-column traces still load, each optional column is read strictly, and
what `write_trace` writes reads back equal with the smallest header."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import ConfigError
from gateway.simulate import (
    OPTIONAL_COLUMNS,
    TRACE_HEADER,
    PoolSpec,
    SiteSpec,
    TraceJob,
    load_trace,
    parse_trace,
    simulate,
    write_trace,
)
from gateway.simulate.engine import check_trace
from gateway.simulate.trace import MAX_TRACE_BYTES

OLD = "job_id,submit_s,duration_s,cards,accelerator,home_site\n"
SITES = (SiteSpec("a", "r1", (PoolSpec("x", 8, 8),)), SiteSpec("b", "r2", (PoolSpec("x", 8, 8),)))


def test_an_old_trace_loads_with_every_new_field_at_its_default() -> None:
    (job,) = parse_trace(OLD + "j1,0,10,2,x,a\n", "t.csv")
    assert job == TraceJob("j1", 0, 10, 2, "x", "a", 2)
    assert (job.tenant, job.project, job.priority_class) == ("", "", "")
    assert (job.nodes, job.max_sites, job.dataset_site, job.dataset_gb) == (0, 1, "", 0.0)


@pytest.mark.parametrize(
    ("column", "cell", "field", "value"),
    [
        ("tenant", "physics", "tenant", "physics"),
        ("project", "lattice-qcd", "project", "lattice-qcd"),
        ("priority_class", "high", "priority_class", "high"),
        ("nodes", "2", "nodes", 2),
        ("max_sites", "3", "max_sites", 3),
        ("dataset_site", "b", "dataset_site", "b"),
    ],
)
def test_each_optional_column_is_read(column: str, cell: str, field: str, value: object) -> None:
    (job,) = parse_trace(f"{OLD.strip()},{column}\nj1,0,10,4,x,a,{cell}\n", "t.csv")
    assert getattr(job, field) == value
    default: Any = TraceJob.__dataclass_fields__[field].default
    assert replace(job, **{field: default}) == TraceJob("j1", 0, 10, 4, "x", "a", 2)


def test_optional_columns_come_in_any_order_and_empty_cells_take_the_default() -> None:
    text = f"{OLD.strip()},dataset_gb,tenant,dataset_site,max_sites\nj1,0,10,4,x,a,12.5,t1,b,2\nj2,0,10,4,x,a,,,,\n"
    j1, j2 = parse_trace(text, "t.csv")
    assert (j1.dataset_gb, j1.tenant, j1.dataset_site, j1.max_sites) == (12.5, "t1", "b", 2)
    assert (j2.dataset_gb, j2.tenant, j2.dataset_site, j2.max_sites) == (0.0, "", "", 1)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (OLD.strip() + ",user", "1: unknown column 'user'; the optional columns are tenant, project, priority_class"),
        (OLD.strip() + ",tenant,tenant", "1: column 'tenant' appears twice"),
        ("job_id,submit_s,duration_s,cards,home_site,accelerator", "1: header is .*it must start with job_id,"),
        ("tenant," + OLD.strip(), "1: header is .*then any of the optional columns tenant, project"),
    ],
)
def test_a_bad_header_is_refused_on_line_1_with_the_known_columns(header: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^t.csv:{message}"):
        parse_trace(header + "\n", "t.csv")


@pytest.mark.parametrize(
    ("columns", "cells", "message"),
    [
        ("tenant", "Physics", "tenant 'Physics' is not a valid name; use 1-63 lowercase"),
        ("project", "a b", "project 'a b' is not a valid name"),
        ("priority_class", "-high", "priority_class '-high' is not a valid name"),
        ("nodes", "-1", "nodes '-1' is not a whole number"),
        ("nodes", "1.5", "nodes '1.5' is not a whole number"),
        ("nodes", "5", "nodes 5 is more than the job's 4 cards"),
        ("max_sites", "0", "max_sites must be at least 1, got 0"),
        ("max_sites", "two", "max_sites 'two' is not a whole number"),
        ("dataset_site", "b/c", "dataset_site 'b/c' is not a valid name"),
        ("dataset_site,dataset_gb", "b,-1", "dataset_gb must be a finite number of GB, at least 0"),
        ("dataset_site,dataset_gb", "b,inf", "dataset_gb must be a finite number of GB"),
        ("dataset_site,dataset_gb", "b,lots", "dataset_gb 'lots' is not a number of GB"),
        ("dataset_gb", "10", "dataset_gb is set but dataset_site is empty; name the centre holding the data"),
        ("tenant,project", "t1", "7 fields; a row has 8"),
    ],
)
def test_each_bad_value_is_refused_with_its_line(columns: str, cells: str, message: str) -> None:
    text = f"{OLD.strip()},{columns}\nj0,0,10,4,x,a{',' * (columns.count(',') + 1)}\nj1,0,10,4,x,a,{cells}\n"
    with pytest.raises(ConfigError, match=f"^t.csv:3: {message}"):
        parse_trace(text, "t.csv")


def test_a_dataset_at_zero_gb_may_name_its_site_alone() -> None:
    (job,) = parse_trace(f"{OLD.strip()},dataset_site,dataset_gb\nj1,0,10,4,x,a,b,0\n", "t.csv")
    assert (job.dataset_site, job.dataset_gb) == ("b", 0.0)


def full_jobs() -> list[TraceJob]:
    return [
        TraceJob("j1", 0, 10, 8, "x", "a", 2, "t1", "t1-p", "high", 2, 2, "b", 1.25),
        TraceJob("j,2", 0.1, 3.5, 1, "", "b", 3),  # a comma in an id is quoted
        TraceJob("j3", 7, 0, 2, "x", "b", 4, tenant="t2"),
    ]


def test_what_is_written_parses_back_equal() -> None:
    out = io.StringIO()
    write_trace(full_jobs(), out)
    assert parse_trace(out.getvalue(), "t.csv") == tuple(full_jobs())


def test_the_header_is_the_smallest_that_keeps_every_stated_field(tmp_path: Path) -> None:
    plain = [TraceJob("j1", 0, 10, 1, "", "a"), TraceJob("j2", 1.5, 10, 1, "x", "b")]
    write_trace(plain, tmp_path / "old.csv")
    assert (tmp_path / "old.csv").read_text() == OLD + "j1,0,10,1,,a\nj2,1.5,10,1,x,b\n"
    some = [replace(plain[0], max_sites=2), replace(plain[1], tenant="t")]
    write_trace(some, tmp_path / "some.csv")
    assert (tmp_path / "some.csv").read_text().splitlines()[0] == ",".join((*TRACE_HEADER, "tenant", "max_sites"))
    assert [replace(j, line=0) for j in load_trace(tmp_path / "some.csv")] == some
    out = io.StringIO()
    write_trace(full_jobs(), out)
    assert out.getvalue().splitlines()[0] == ",".join((*TRACE_HEADER, *OPTIONAL_COLUMNS))


def test_the_engine_runs_an_extended_trace_as_it_runs_the_old_one() -> None:
    extended = full_jobs()
    plain = [TraceJob(j.job_id, j.submit_s, j.duration_s, j.cards, j.accelerator, j.home_site) for j in extended]
    for mode in ("siloed", "federated", "pooled"):
        ran = [(o.site, o.start_s) for o in simulate(extended, SITES, mode).outcomes]
        assert ran == [(o.site, o.start_s) for o in simulate(plain, SITES, mode).outcomes]


def test_a_dataset_site_missing_from_the_sites_file_names_the_line() -> None:
    jobs = parse_trace(f"{OLD.strip()},dataset_site\nj1,0,10,1,,a,b\nj2,0,10,1,,a,c\n", "t.csv")
    with pytest.raises(ConfigError, match=r"^t.csv:3: dataset_site 'c' is not in the sites file \(sites: a, b\)"):
        check_trace(jobs, SITES, "t.csv")


def test_a_trace_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    with big.open("wb") as f:
        f.truncate(MAX_TRACE_BYTES + 1)  # sparse: no disk, and reading it would be the bug
    with pytest.raises(ConfigError, match=r"over the .* byte limit for a trace"):
        load_trace(big)
