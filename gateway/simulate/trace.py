"""A workload trace for the simulator: one CSV row per job, read strictly.

Owns: the trace format and its validation. The header is exactly `job_id,submit_s,duration_s,cards,
accelerator,home_site`; times are seconds (non-negative numbers), `cards` a whole number of at least 1,
`accelerator` a class name or empty (any class), `home_site` the centre the job was submitted to. Every
problem is a ConfigError naming file and line. It does not check names against a sites file: the engine
does (`gateway.simulate.engine.check_trace`), since only it knows both.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import ConfigError

TRACE_HEADER = ("job_id", "submit_s", "duration_s", "cards", "accelerator", "home_site")
MAX_TRACE_BYTES = 256 << 20
_CARDS = re.compile(r"[0-9]{1,9}")


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
    nodes: int = 0  # nodes the job states (0: the gateway chooses)
    max_sites: int = 1  # sites a gang may span (1: one site)
    dataset_site: str = ""  # where the job's data lies ("" : nowhere in particular)
    dataset_gb: float = 0.0  # how much of it


def load_trace(path: Path) -> tuple[TraceJob, ...]:
    try:
        size = path.stat().st_size
        if size > MAX_TRACE_BYTES:
            raise ConfigError(f"{path}: {size} bytes is over the {MAX_TRACE_BYTES} byte limit for a trace")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the trace: {exc}", metadata={"file": str(path)}) from exc
    return parse_trace(text, str(path))


def parse_trace(text: str, source: str = "<trace>") -> tuple[TraceJob, ...]:
    """Every job of a trace CSV, in file order. Raises ConfigError `source:line: problem` on the first fault."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise _error(source, 1, f"empty file; the first line must be the header {','.join(TRACE_HEADER)}")
        if tuple(h.strip() for h in header) != TRACE_HEADER:
            raise _error(source, 1, f"header is {','.join(header)!r}; it must be {','.join(TRACE_HEADER)}")
        jobs: list[TraceJob] = []
        seen: dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank lines are harmless
            job = _job(row, source, line)
            if job.job_id in seen:
                raise _error(source, line, f"job_id {job.job_id!r} already used on line {seen[job.job_id]}")
            seen[job.job_id] = line
            jobs.append(job)
    except csv.Error as exc:
        raise _error(source, reader.line_num, f"not valid CSV: {exc}") from exc
    return tuple(jobs)


def _job(row: list[str], source: str, line: int) -> TraceJob:
    if len(row) != len(TRACE_HEADER):
        raise _error(source, line, f"{len(row)} fields; a row has {len(TRACE_HEADER)} ({','.join(TRACE_HEADER)})")
    job_id, submit, duration, cards, accelerator, home = (field.strip() for field in row)
    if not job_id:
        raise _error(source, line, "job_id is empty")
    if not home:
        raise _error(source, line, "home_site is empty; every job is submitted at some centre")
    return TraceJob(
        job_id=job_id,
        submit_s=_seconds(submit, "submit_s", source, line),
        duration_s=_seconds(duration, "duration_s", source, line),
        cards=_cards(cards, source, line),
        accelerator=accelerator,
        home_site=home,
        line=line,
    )


def _seconds(text: str, name: str, source: str, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _error(source, line, f"{name} {text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise _error(source, line, f"{name} must be a finite number of seconds, at least 0, got {text!r}")
    return value


def _cards(text: str, source: str, line: int) -> int:
    if not _CARDS.fullmatch(text):
        raise _error(source, line, f"cards {text!r} is not a whole number")
    value = int(text)
    if value < 1:
        raise _error(source, line, "cards must be at least 1")
    return value


def _error(source: str, line: int, problem: str) -> ConfigError:
    return ConfigError(f"{source}:{line}: {problem}", metadata={"file": source, "line": str(line)})
