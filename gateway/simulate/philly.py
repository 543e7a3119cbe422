"""Convert a Philly/Gavel-style per-job CSV into a federation to simulate: each virtual cluster one centre.

Owns: reading such a CSV strictly and turning it into simulator jobs and sites. The input is one row per job
with a header that names (case-insensitive, any order; other columns are ignored) a job id, a submit time, a
duration, a GPU count and a virtual cluster, spelled as `COLUMNS` lists. The choices, each a simplification
to keep in mind when reading the results:
- Times: submit times are seconds (numbers, kept as they are) or timestamps (ISO-8601 or `YYYY-MM-DD
  HH:MM:SS`, made relative to the earliest submit of a job that is kept); one file uses one of the two.
  Durations are seconds. `time_compression` divides every submit time (arrivals that many times as dense);
  durations are kept.
- Jobs: one per row with at least one GPU; rows with zero GPUs are skipped and counted. Jobs ask for any
  class (the trace does not say which card a job ran on); cards = the GPU count.
- Centres and tenants: each virtual cluster becomes one centre (`home_site`) and one tenant of the same name,
  so a VC's name must be a valid tenant name. Siloed is then Philly as it was run: each VC on its own quota.
- Capacity: each centre has one pool of `accelerator` cards (default `DEFAULT_ACCELERATOR`: the catalogue has
  no V100 or P100, the cards Philly had, and the simulator needs one class name, not its speed), sized by the
  VC's peak concurrent GPU demand if every job started when submitted (after time compression), rounded up
  to whole 8-card nodes; or `cards_per_vc` cards each when given. Sized by peak, every VC holds all it ever
  asks for at once, so nothing waits in any mode (time compression included: the peak is taken after it):
  that is the capacity each VC would need alone. Pass `cards_per_vc` to see a federation that is short of it.
It reads nothing but its one input (refused by size over `MAX_TRACE_BYTES`, before reading) and writes
nothing: the command writes the trace and sites with the shared writers.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gateway.errors import ConfigError
from gateway.jobs.validate import NAME as POLICY_NAME
from gateway.jobs.validate import NAME_HINT as POLICY_NAME_HINT
from gateway.simulate.sites import NAME as SITE_NAME
from gateway.simulate.sites import NAME_HINT as SITE_NAME_HINT
from gateway.simulate.sites import PoolSpec, SiteSpec
from gateway.simulate.trace import TraceJob, read_limited

# Each field the converter needs, and the header spellings it accepts for it (compared in lower case).
COLUMNS: dict[str, tuple[str, ...]] = {
    "job id": ("job_id", "jobid", "id"),
    "submit time": ("submit_time", "submitted_time", "arrival_time", "submit_s"),
    "duration": ("duration", "duration_s", "run_time", "runtime"),
    "GPU count": ("num_gpus", "gpus", "gpu_num", "cards"),
    "virtual cluster": ("vc", "virtual_cluster", "cluster"),
}
DEFAULT_ACCELERATOR = "nvidia-a100"
CARDS_PER_NODE = 8
REGION = "philly"
_WHOLE = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class PhillyJob:
    """One row of the input. `submit` is seconds, or a timestamp before conversion makes it relative."""

    job_id: str
    submit: float | datetime
    duration_s: float
    gpus: int
    vc: str
    line: int


@dataclass(frozen=True)
class Conversion:
    """What came out, and how many rows were left out for having no GPU."""

    jobs: tuple[TraceJob, ...]
    sites: tuple[SiteSpec, ...]
    zero_gpu: int
    timestamps: bool  # submit times were timestamps, now seconds from the earliest


def read_jobs(path: Path) -> tuple[PhillyJob, ...]:
    """Every row of a per-job CSV, in file order, checked. ConfigError `path:line: problem; fix` on the first."""
    text = read_limited(path, "a per-job CSV")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise _error(path, 1, "empty file; the first line must be a header naming " + _wanted())
        where = _header(header, path)
        rows: list[PhillyJob] = []
        seen: dict[str, int] = {}
        kind = ""  # of the first submit time: every other must be alike
        first = 0
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise _error(path, line, f"{len(row)} fields; the header has {len(header)}")
            job = _row([row[i].strip() for i in where], path, line)
            if job.job_id in seen:
                raise _error(path, line, f"job id {job.job_id!r} already used on line {seen[job.job_id]}")
            seen[job.job_id] = line
            this = _kind(job.submit)
            if not kind:
                kind, first = this, line
            elif this != kind:
                raise _error(
                    path, line, f"submit time is {this} but line {first}'s is {kind}; use one form in the whole file"
                )
            rows.append(job)
    except csv.Error as exc:
        raise _error(path, reader.line_num, f"not valid CSV: {exc}") from exc
    return tuple(rows)


def convert(
    rows: Sequence[PhillyJob],
    *,
    accelerator: str = DEFAULT_ACCELERATOR,
    cards_per_vc: int | None = None,
    time_compression: float = 1.0,
    source: str = "<jobs>",
) -> Conversion:
    """The trace and sites of `rows` (from `read_jobs`): see the module's docstring for each choice."""
    if not SITE_NAME.fullmatch(accelerator):
        raise ValueError(f"accelerator {accelerator!r} is not a valid class name; {SITE_NAME_HINT}")
    if cards_per_vc is not None and cards_per_vc < 1:
        raise ValueError(f"cards_per_vc must be at least 1, got {cards_per_vc}")
    if not time_compression >= 1:
        raise ValueError(f"time_compression must be at least 1, got {time_compression}")
    kept = [r for r in rows if r.gpus > 0]
    if not kept:
        raise ConfigError(f"{source}: no job asks for a GPU; nothing to simulate", metadata={"file": source})
    stamps = [r.submit for r in kept if isinstance(r.submit, datetime)]
    origin = min(stamps) if stamps else None
    jobs: list[TraceJob] = []
    for r in kept:
        if isinstance(r.submit, datetime):
            assert origin is not None
            offset = (r.submit - origin).total_seconds()
        else:
            offset = r.submit
        jobs.append(TraceJob(r.job_id, offset / time_compression, r.duration_s, r.gpus, "", r.vc, r.line, tenant=r.vc))
    demand = _peak_demand(jobs)
    sites = []
    for vc in sorted(demand):
        cards = cards_per_vc if cards_per_vc is not None else _whole_nodes(demand[vc])
        sites.append(SiteSpec(vc, REGION, (PoolSpec(accelerator, cards, min(CARDS_PER_NODE, cards)),)))
    return Conversion(tuple(jobs), tuple(sites), len(rows) - len(kept), bool(stamps))


def _peak_demand(jobs: Sequence[TraceJob]) -> dict[str, int]:
    """Per VC, the most cards its jobs hold at once if each starts when submitted, and never less than its
    largest job (a job of zero duration holds nothing, but still needs its cards to exist)."""
    changes: dict[str, list[tuple[float, int]]] = defaultdict(list)
    peak: dict[str, int] = defaultdict(int)
    for job in jobs:
        changes[job.home_site] += [(job.submit_s, job.cards), (job.submit_s + job.duration_s, -job.cards)]
        peak[job.home_site] = max(peak[job.home_site], job.cards)
    for vc, events in changes.items():
        held = 0
        for _, delta in sorted(events):  # at one instant, ends (negative) before starts
            held += delta
            peak[vc] = max(peak[vc], held)
    return dict(peak)


def _whole_nodes(cards: int) -> int:
    return max(1, math.ceil(cards / CARDS_PER_NODE)) * CARDS_PER_NODE


def _wanted() -> str:
    return "; ".join(f"a {what} ({' or '.join(names)})" for what, names in COLUMNS.items())


def _header(header: list[str], path: Path) -> list[int]:
    """The index of each needed column, in `COLUMNS` order."""
    names = [h.strip().lower() for h in header]
    where: list[int] = []
    missing: list[str] = []
    for what, spellings in COLUMNS.items():
        found = [i for i, name in enumerate(names) if name in spellings]
        if len(found) > 1:
            both = " and ".join(repr(header[i].strip()) for i in found)
            raise _error(path, 1, f"columns {both} both name the {what}; drop or rename all but one")
        if found:
            where.append(found[0])
        else:
            missing.append(f"a {what} ({' or '.join(spellings)})")
    if missing:
        raise _error(path, 1, f"no column for {'; '.join(missing)}; the header needs {_wanted()}")
    return where


def _row(cells: list[str], path: Path, line: int) -> PhillyJob:
    job_id, submit, duration, gpus, vc = cells
    if not job_id:
        raise _error(path, line, "the job id is empty; give every row an id")
    if not vc:
        raise _error(path, line, "the virtual cluster is empty; every job belongs to one")
    if not POLICY_NAME.fullmatch(vc):
        raise _error(
            path, line, f"virtual cluster {vc!r} cannot name a centre and a tenant; rename it: {POLICY_NAME_HINT}"
        )
    if not _WHOLE.fullmatch(gpus):
        raise _error(path, line, f"GPU count {gpus!r} is not a whole number; write 0 or more whole GPUs")
    return PhillyJob(job_id, _submit(submit, path, line), _duration(duration, path, line), int(gpus), vc, line)


def _submit(text: str, path: Path, line: int) -> float | datetime:
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or seconds < 0:
            raise _error(path, line, f"submit time {text!r} must be a finite number of seconds, at least 0")
        return seconds
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise _error(
            path,
            line,
            f"submit time {text!r} is neither seconds nor a timestamp; write e.g. 3600 or 2017-10-03 14:22:05",
        ) from None


def _duration(text: str, path: Path, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _error(
            path, line, f"duration {text!r} is not a number of seconds; drop the row if it never ran"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise _error(path, line, f"duration {text!r} must be a finite number of seconds, at least 0")
    return value


def _kind(submit: float | datetime) -> str:
    if not isinstance(submit, datetime):
        return "seconds"
    return "a timestamp with a time zone" if submit.tzinfo is not None else "a timestamp without a time zone"


def _error(path: Path, line: int, problem: str) -> ConfigError:
    return ConfigError(f"{path}:{line}: {problem}", metadata={"file": str(path), "line": str(line)})
