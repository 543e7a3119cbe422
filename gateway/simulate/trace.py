"""A workload trace for the simulator: one CSV row per job, read strictly and written back.

Owns: the trace format, its validation and its writer. The header starts with exactly `job_id,submit_s,
duration_s,cards,accelerator,home_site` (every trace written before issue 17 is exactly that); times are
seconds (non-negative numbers), `cards` a whole number of at least 1, `accelerator` a class name or empty (any
class), `home_site` the centre the job was submitted to. After those six, any of the optional columns of
`OPTIONAL_COLUMNS` may follow, each at most once, in any order; an empty cell means "not stated" and takes the
field's default (see `TraceJob`). Every problem is a ConfigError naming file, line and the fix. It does not
check site names against a sites file: the engine does (`gateway.simulate.engine.check_trace`), since only it
knows both.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TextIO

from gateway.errors import ConfigError
from gateway.jobs.validate import NAME as POLICY_NAME
from gateway.jobs.validate import NAME_HINT as POLICY_NAME_HINT
from gateway.simulate.sites import NAME as SITE_NAME
from gateway.simulate.sites import NAME_HINT as SITE_NAME_HINT

TRACE_HEADER = ("job_id", "submit_s", "duration_s", "cards", "accelerator", "home_site")
OPTIONAL_COLUMNS = ("tenant", "project", "priority_class", "nodes", "max_sites", "dataset_site", "dataset_gb")
MAX_TRACE_BYTES = 256 << 20
_WHOLE = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class TraceJob:
    """One job of a trace. Units: seconds from the trace start; cards are whole accelerator cards."""

    job_id: str
    submit_s: float
    duration_s: float
    cards: int
    accelerator: str  # "" means any class
    home_site: str
    line: int = 0  # where it came from, for messages
    tenant: str = ""  # "" : the run's default tenant (the twin's --tenant)
    project: str = ""  # "" : the run's default project (the twin's --project)
    priority_class: str = ""  # "" : the policy's default class
    nodes: int = 0  # whole nodes the job wants, its cards spread evenly; 0: any shape (the gateway chooses)
    max_sites: int = 1  # sites a gang may span (1: one site)
    dataset_site: str = ""  # where the job's data lies ("" : nowhere in particular)
    dataset_gb: float = 0.0  # the size of that data in GB (10^9 bytes); 0: not stated


_DEFAULTS = {f.name: f.default for f in fields(TraceJob)}


def read_limited(path: Path, what: str) -> str:
    """The text of `path`, refused by its size before reading when over MAX_TRACE_BYTES (traces and inputs
    converted into traces alike: a runaway file must not fill memory)."""
    try:
        size = path.stat().st_size
        if size > MAX_TRACE_BYTES:
            raise ConfigError(
                f"{path}: {size} bytes is over the {MAX_TRACE_BYTES} byte limit for {what}; split it or take a"
                " sample of its rows",
                metadata={"file": str(path)},
            )
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc}", metadata={"file": str(path)}) from exc


def load_trace(path: Path) -> tuple[TraceJob, ...]:
    return parse_trace(read_limited(path, "a trace"), str(path))


def parse_trace(text: str, source: str = "<trace>") -> tuple[TraceJob, ...]:
    """Every job of a trace CSV, in file order. Raises ConfigError `source:line: problem` on the first fault."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise _error(source, 1, f"empty file; the first line must be the header {','.join(TRACE_HEADER)}")
        columns = _columns([h.strip() for h in header], source)
        jobs: list[TraceJob] = []
        seen: dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank lines are harmless
            job = _job(row, columns, source, line)
            if job.job_id in seen:
                raise _error(source, line, f"job_id {job.job_id!r} already used on line {seen[job.job_id]}")
            seen[job.job_id] = line
            jobs.append(job)
    except csv.Error as exc:
        raise _error(source, reader.line_num, f"not valid CSV: {exc}") from exc
    return tuple(jobs)


def write_trace(jobs: Iterable[TraceJob], path_or_stream: Path | str | TextIO) -> None:
    """Write `jobs` as a trace with the smallest header that keeps every stated field: the six required
    columns, then each optional column (in `OPTIONAL_COLUMNS` order) that some job sets to other than its
    default. `parse_trace` reads back the same jobs (numbers exactly; `line` becomes the row's line)."""
    jobs = tuple(jobs)
    optional = [c for c in OPTIONAL_COLUMNS if any(getattr(j, c) != _DEFAULTS[c] for j in jobs)]
    if isinstance(path_or_stream, (str, Path)):
        with Path(path_or_stream).open("w", encoding="utf-8", newline="") as f:
            _write(jobs, optional, f)
    else:
        _write(jobs, optional, path_or_stream)


def _write(jobs: Sequence[TraceJob], optional: Sequence[str], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow((*TRACE_HEADER, *optional))
    for job in jobs:
        row = [job.job_id, _number(job.submit_s), _number(job.duration_s), str(job.cards), job.accelerator]
        row.append(job.home_site)
        for column in optional:
            value = getattr(job, column)
            row.append(_number(value) if isinstance(value, float) else str(value))
        writer.writerow(row)


def _number(value: float) -> str:
    value = float(value)  # an int passed where a float is meant still writes as a number
    return str(int(value)) if value.is_integer() else repr(value)


def _columns(header: list[str], source: str) -> tuple[str, ...]:
    """The header as read, checked: the six required columns first, then known optional ones at most once."""
    known = ", ".join(OPTIONAL_COLUMNS)
    if tuple(header[: len(TRACE_HEADER)]) != TRACE_HEADER:
        raise _error(
            source,
            1,
            f"header is {','.join(header)!r}; it must start with {','.join(TRACE_HEADER)}"
            f" (then any of the optional columns {known})",
        )
    extra = header[len(TRACE_HEADER) :]
    for i, column in enumerate(extra):
        if column not in OPTIONAL_COLUMNS:
            raise _error(source, 1, f"unknown column {column!r}; the optional columns are {known}")
        if column in extra[:i]:
            raise _error(source, 1, f"column {column!r} appears twice; give each of {known} at most once")
    return tuple(header)


def _job(row: list[str], columns: tuple[str, ...], source: str, line: int) -> TraceJob:
    if len(row) != len(columns):
        raise _error(source, line, f"{len(row)} fields; a row has {len(columns)} ({','.join(columns)})")
    cells = dict(zip(columns, (field.strip() for field in row), strict=True))
    job_id, home = cells["job_id"], cells["home_site"]
    if not job_id:
        raise _error(source, line, "job_id is empty")
    if not home:
        raise _error(source, line, "home_site is empty; every job is submitted at some centre")
    cards = _whole(cells["cards"], "cards", 1, source, line)
    stated = {c: cells[c] for c in OPTIONAL_COLUMNS if cells.get(c)}
    nodes = _whole(stated["nodes"], "nodes", 0, source, line) if "nodes" in stated else 0
    if nodes > cards:
        raise _error(source, line, f"nodes {nodes} is more than the job's {cards} cards; each node holds at least one")
    dataset_site = _name(stated.get("dataset_site", ""), "dataset_site", SITE_NAME, SITE_NAME_HINT, source, line)
    dataset_gb = _gigabytes(stated["dataset_gb"], source, line) if "dataset_gb" in stated else 0.0
    if dataset_gb > 0 and not dataset_site:
        raise _error(source, line, "dataset_gb is set but dataset_site is empty; name the centre holding the data")
    return TraceJob(
        job_id=job_id,
        submit_s=_seconds(cells["submit_s"], "submit_s", source, line),
        duration_s=_seconds(cells["duration_s"], "duration_s", source, line),
        cards=cards,
        accelerator=cells["accelerator"],
        home_site=home,
        line=line,
        tenant=_name(stated.get("tenant", ""), "tenant", POLICY_NAME, POLICY_NAME_HINT, source, line),
        project=_name(stated.get("project", ""), "project", POLICY_NAME, POLICY_NAME_HINT, source, line),
        priority_class=_name(
            stated.get("priority_class", ""), "priority_class", POLICY_NAME, POLICY_NAME_HINT, source, line
        ),
        nodes=nodes,
        max_sites=_whole(stated["max_sites"], "max_sites", 1, source, line) if "max_sites" in stated else 1,
        dataset_site=dataset_site,
        dataset_gb=dataset_gb,
    )


def _seconds(text: str, name: str, source: str, line: int) -> float:
    return _amount(text, name, "seconds", source, line)


def _whole(text: str, name: str, minimum: int, source: str, line: int) -> int:
    if not _WHOLE.fullmatch(text):
        raise _error(source, line, f"{name} {text!r} is not a whole number")
    value = int(text)
    if value < minimum:
        raise _error(source, line, f"{name} must be at least {minimum}, got {value}")
    return value


def _gigabytes(text: str, source: str, line: int) -> float:
    return _amount(text, "dataset_gb", "GB", source, line)


def _amount(text: str, name: str, unit: str, source: str, line: int) -> float:
    """A finite, non-negative number of `unit`s, or the error naming the cell, its line and what it must be."""
    try:
        value = float(text)
    except ValueError:
        raise _error(source, line, f"{name} {text!r} is not a number of {unit}") from None
    if not math.isfinite(value) or value < 0:
        raise _error(source, line, f"{name} must be a finite number of {unit}, at least 0, got {text!r}")
    return value


def _name(text: str, column: str, pattern: re.Pattern[str], hint: str, source: str, line: int) -> str:
    if text and not pattern.fullmatch(text):
        raise _error(source, line, f"{column} {text!r} is not a valid name; {hint}")
    return text


def _error(source: str, line: int, problem: str) -> ConfigError:
    return ConfigError(f"{source}:{line}: {problem}", metadata={"file": source, "line": str(line)})
