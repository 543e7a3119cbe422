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
from bench.registry import SUMMARY_KEYS, owned_keys

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


# Results files written before the registry kept admission's detail at the top level under these keys.
LEGACY_KEYS = {"admission": ("plan", "targets", "runs")}


def carry_over(path: Path, document: dict[str, Any], not_run: list[str]) -> dict[str, Any]:
    """`document` with the results of the benchmarks in `not_run` taken from the file already at `path` (so
    that `python -m bench ingest` refreshes one benchmark without losing the others' figures): each one's
    detail (the key named after it) and the summary keys it owns, naming what was carried over and from which
    run (`carried_over`: benchmark -> that run's date). A summary key the earlier file has no figure for stays
    None: nothing is carried that was not measured."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return document
    summary = document.setdefault("summary", {})
    earlier_summary = previous.get("summary") or {}
    carried: dict[str, Any] = {}
    for name in not_run:
        detail = previous.get(name)
        if detail is None and all(previous.get(k) for k in LEGACY_KEYS.get(name, ("-",))):
            detail = {k: previous[k] for k in LEGACY_KEYS[name]}
        figures = {k: earlier_summary[k] for k in owned_keys(name) if earlier_summary.get(k) is not None}
        if detail is None and not figures:
            continue
        if detail is not None:
            document[name] = detail
        summary.update(figures)
        earlier = previous.get("carried_over", {}).get(name)
        carried[name] = earlier or previous.get("machine", {}).get("date", "an earlier run")
    if carried:
        document["carried_over"] = carried
    return document


def full_summary(measured: dict[str, float | None]) -> dict[str, float | None]:
    """All of SUMMARY_KEYS, in order: the figure where there is one, None where there is not. Keys that are
    not summary keys are dropped (a benchmark reports only its own)."""
    return {key: measured.get(key) for key in SUMMARY_KEYS}


def missing_keys(summary: dict[str, float | None]) -> list[str]:
    return [key for key in SUMMARY_KEYS if summary.get(key) is None]
