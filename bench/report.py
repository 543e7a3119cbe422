"""What a benchmark run leaves behind: a table on stdout and a JSON document on disk.

Owns: the `Row` every benchmark reports, the table and the notes under it, a row's JSON, and writing the JSON
atomically. It does not run anything or judge figures: benchmarks say what their targets are and whether a
row met its target, and `bench.machine` says what the machine was.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.load import RunResult

COLUMNS = ("benchmark", "mode", "requests", "req/s", "p50 ms", "p99 ms", "vs echo %", "target")


@dataclass(frozen=True)
class Row:
    benchmark: str  # what was measured, e.g. "admission" or "echo"
    mode: str  # how it was loaded, e.g. "c=64"
    requested: int  # measured calls asked for; result.requests is what was made before the time cap
    result: RunResult
    vs_echo: float | None = None  # req/s as a fraction of the echo baseline's in the same mode
    target: str = ""  # the DESIGN budget this row is held to, with its verdict
    met: bool | None = None  # that verdict; None when the row has no budget
    correct: bool = True  # the run's own correctness checks passed (no errors, nothing lost)
    checks: dict[str, Any] = field(default_factory=dict)  # those checks' figures, for the JSON
    note: str = ""  # those checks in a sentence, printed under the table


def _cells(row: Row) -> tuple[str, ...]:
    r = row.result
    requests = f"{r.requests}" if not r.capped else f"{r.requests} of {row.requested}"
    return (
        row.benchmark,
        row.mode,
        requests,
        f"{r.rps:,.0f}",
        f"{r.p50_ms:.2f}",
        f"{r.p99_ms:.2f}",
        "" if row.vs_echo is None else f"{row.vs_echo * 100:.1f}",
        row.target,
    )


def render_table(rows: list[Row]) -> str:
    cells = [COLUMNS, *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    numeric = {2, 3, 4, 5, 6}

    def line(values: tuple[str, ...]) -> str:
        return " | ".join(
            v.rjust(w) if i in numeric else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([line(COLUMNS), rule, *(line(c) for c in cells[1:])])


def render_notes(rows: list[Row], max_seconds: float | None) -> list[str]:
    """Lines for under the table: capped runs, failed checks, and each row's note."""
    notes = []
    for row in rows:
        r, name = row.result, f"{row.benchmark} {row.mode}"
        if r.capped:
            notes.append(f"* {name}: capped at {max_seconds:g} s, {r.requests} of {row.requested} calls made")
        if not row.correct:
            notes.append(f"! {name}: NOT CORRECT: {r.errors} errors ({r.first_error or 'none'}); {row.note}")
        elif row.note:
            notes.append(f"  {name}: {row.note}")
    return notes


def row_to_json(row: Row) -> dict[str, Any]:
    r = row.result
    return {
        "benchmark": row.benchmark,
        "mode": row.mode,
        "requested": row.requested,
        **asdict(r),
        "rps": r.rps,
        "vs_echo": row.vs_echo,
        "target": row.target,
        "target_met": row.met,
        "correct": row.correct,
        **row.checks,
    }


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(path)


# The keys of the results document each benchmark writes: what a run that skips it carries over.
KEYS_OF = {"admission": ("plan", "targets", "runs"), "cycle": ("cycle",), "simulation": ("simulation",)}


def carry_over(path: Path, document: dict[str, Any], skipped: list[str]) -> dict[str, Any]:
    """`document` with the results of the `skipped` benchmarks taken from the file already at `path` (so that
    `--skip admission` refreshes the rest without losing the admission figures), naming what was carried
    over and from which run (`carried_over`: benchmark -> that run's date)."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return document
    carried: dict[str, Any] = {}
    for name in skipped:
        keys = [k for k in KEYS_OF.get(name, ()) if previous.get(k)]
        if keys:
            document.update({k: previous[k] for k in keys})
            earlier = previous.get("carried_over", {}).get(name)
            carried[name] = earlier or previous.get("machine", {}).get("date", "an earlier run")
    if carried:
        document["carried_over"] = carried
    return document
