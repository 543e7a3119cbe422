"""How every `fedgate` command prints: aligned table for people, JSON or YAML for scripts (`-o`).

Owns: the `-o/--output` flag, turning rows of plain values into text in the three formats, and the row shapes
of the common views (a job, a site's pools, an explanation). Tables show the chosen columns only; JSON and
YAML carry every key of each row (times as ISO-8601 strings, durations as seconds) so scripts get more than
the eye does. It does not fetch anything or decide exit codes (`gateway.cli.connect` does).
"""

from __future__ import annotations

import argparse
import enum
import json
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from fedgate.common.yaml import dump_yaml
from gateway.jobs.model import Job, JobSpec, Reason
from gateway.jobs.specfile import format_duration
from gateway.placement import nodes as node_shape
from gateway.placement.place import Candidate
from gateway.sites.model import Pool, SiteView

FORMATS = ("table", "json", "yaml")
Column = tuple[str, str]


def add_output_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=FORMATS, default="table", help="output format (default: table)")


def plain(value: Any) -> Any:
    """A value as JSON/YAML-safe data: ISO-8601 times, seconds for durations, enum values, lists."""
    if isinstance(value, datetime):
        return _utc(value).isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        return int(seconds) if seconds.is_integer() else seconds
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    return value


def cell(value: Any) -> str:
    """A value as table text: '-' for nothing, yes/no, comma lists, UTC times to the second."""
    if value is None or value == "" or (isinstance(value, list | tuple) and not value):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return f"{_utc(value):%Y-%m-%d %H:%M:%S}"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return ",".join(f"{k}={cell(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ",".join(cell(v) for v in value)
    return str(value).replace("\n", " ")


def _width(text: str) -> int:
    """Display width: CJK wide characters take two columns (site and tenant names may be Chinese)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    grid = [[header for _, header in columns]]
    grid += [[cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(_width(line[i]) for line in grid) for i in range(len(columns))]
    lines = []
    for line in grid:
        padded = [text + " " * (widths[i] - _width(text)) for i, text in enumerate(line[:-1])]
        lines.append("  ".join([*padded, line[-1]]).rstrip())
    return "\n".join(lines)


def _dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(plain(data), indent=2, ensure_ascii=False)
    if fmt == "yaml":
        return dump_yaml(plain(data)).rstrip("\n")
    raise ValueError(f"unknown output format {fmt!r}; valid formats: {', '.join(FORMATS)}")


def render(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], fmt: str) -> str:
    """Rows as an aligned table of `columns` (key, HEADER), or as a JSON/YAML list of whole rows."""
    if fmt == "table":
        return _table(rows, columns)
    return _dump(list(rows), fmt)


def render_record(record: Mapping[str, Any], fmt: str) -> str:
    """One object: `key: value` lines for people, a JSON/YAML mapping for scripts."""
    if fmt != "table":
        return _dump(record, fmt)
    width = max((_width(k) for k in record), default=0)
    return "\n".join(f"{k}:{' ' * (width - _width(k))} {cell(v)}" for k, v in record.items())


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def human_age(delta: timedelta) -> str:
    """The two most significant units: 3d4h, 2h5m, 4m10s, 12s."""
    parts, current = [], ""
    for ch in format_duration(max(delta, timedelta(0))):
        current += ch
        if ch.isalpha():
            parts.append(current)
            current = ""
    return "".join(parts[:2])


def capacity_text(spec: JobSpec) -> str:
    """What a job asks for, in a table cell: its class, or its capability such as `>=64GiB cuda|dtk`."""
    cap = spec.resources.capability
    if cap is None:
        return spec.resources.accelerator_class
    parts = []
    if cap.min_memory_gib:
        parts.append(f">={cap.min_memory_gib:g}GiB")
    if cap.min_bf16_tflops:
        parts.append(f">={cap.min_bf16_tflops:g}TFLOPS")
    if cap.stacks:
        parts.append("|".join(cap.stacks))
    return " ".join(parts) or "any"


def reason_row(reason: Reason) -> dict[str, Any]:
    return {"stage": reason.stage, "code": reason.code, "site": reason.site, "message": reason.message}


def job_row(job: Job, now: datetime | None = None) -> dict[str, Any]:
    """A job as one row. Table columns use job_id..reason; JSON/YAML also get times and the reason chain."""
    now = _utc(now or datetime.now(UTC))
    classes = sorted({p.accelerator_class for p in job.placements if p.accelerator_class})
    duration = None
    if job.start_time is not None:
        duration = _utc(job.end_time or now) - _utc(job.start_time)
    return {
        "job_id": job.job_id,
        "tenant": job.spec.tenant,
        "project": job.spec.project,
        "name": job.spec.name,
        "state": job.state.value,
        "attempt": job.attempt,
        "sites": list(job.sites),
        "class": ",".join(classes) or capacity_text(job.spec),
        "cards": job.spec.resources.cards,
        "nodes": sum(max(p.nodes, 1) for p in job.placements) or job.spec.resources.nodes or "",
        "age": human_age(now - _utc(job.create_time)),
        "duration": human_age(duration) if duration is not None else "",
        "reason": job.reasons[-1].message if job.reasons else "",
        "exit_code": job.exit_code,
        "created": job.create_time,
        "started": job.start_time,
        "ended": job.end_time,
        "reasons": [reason_row(r) for r in job.reasons],
    }


def site_state(site: SiteView) -> str:
    """ready, draining, offline; suspect (heartbeats missed) or lost (past its lease), with why."""
    if site.liveness in {"suspect", "lost"}:
        return f"{site.liveness} ({site.liveness_reason})" if site.liveness_reason else site.liveness
    if not site.connected:
        return "offline"
    return "draining" if site.draining else "ready"


def site_rows(site: SiteView) -> list[dict[str, Any]]:
    """One row per pool of a site (one row with no class when it offers nothing)."""
    common = {"site": site.name, "state": site_state(site)}
    tail = {"agent_version": site.agent_version, "last_seen": site.last_seen}
    if not site.pools:
        return [{**common, "class": "", "total": 0, "offered": 0, "free": 0, "leased": 0, **tail}]
    return [
        {
            **common,
            "class": pool.accelerator_class,
            "total": pool.total,
            "offered": pool.offered,
            "free": site.free_cards(pool),
            "leased": site.leased_cards(pool.accelerator_class),
            "cards_per_node": pool.cards_per_node,
            **_node_counts(pool, site.free_cards(pool)),
            "interconnect": pool.interconnect,
            "labels": dict(pool.labels),
            **tail,
        }
        for pool in site.pools
    ]


def _node_counts(pool: Pool, free: int) -> dict[str, Any]:
    """The pool's nodes (its cards over cards_per_node), the whole ones free for a multi-node job, and the
    most cards free on one node, as placement sees them (`gateway.placement.nodes.room`); blank when the pool
    says no node shape."""
    if pool.cards_per_node <= 0:
        return {"nodes": "", "free_nodes": "", "largest_free_on_node": ""}
    have = node_shape.room(pool, free)
    return {"nodes": pool.total // pool.cards_per_node, "free_nodes": have.whole, "largest_free_on_node": have.largest}


class ExplanationLike(Protocol):
    """What `render_explanation` reads; both the domain's and the client library's Explanation fit."""

    @property
    def admitted(self) -> bool: ...
    @property
    def reasons(self) -> tuple[Reason, ...]: ...
    @property
    def candidates(self) -> tuple[Candidate, ...]: ...
    @property
    def policy_version(self) -> str: ...


REASON_COLUMNS: list[Column] = [
    ("stage", "STAGE"),
    ("code", "CODE"),
    ("site", "SITE"),
    ("message", "MESSAGE"),
]
CANDIDATE_COLUMNS: list[Column] = [
    ("site", "SITE"),
    ("feasible", "FEASIBLE"),
    ("score", "SCORE"),
    ("class", "CLASS"),
    ("why", "WHY"),
]


def candidate_row(candidate: Candidate) -> dict[str, Any]:
    return {
        "site": candidate.site,
        "feasible": candidate.feasible,
        "score": candidate.score,
        "class": candidate.accelerator_class,
        "why": "; ".join(r.message for r in candidate.reasons),
        "reasons": [reason_row(r) for r in candidate.reasons],
    }


def render_explanation(explanation: ExplanationLike, fmt: str) -> str:
    """Why a job is where it is: admitted or not, the reason chain, and how each site judged it."""
    reasons = [reason_row(r) for r in explanation.reasons]
    candidates = [candidate_row(c) for c in explanation.candidates]
    if fmt != "table":
        record = {
            "admitted": explanation.admitted,
            "policy_version": explanation.policy_version,
            "reasons": reasons,
            "candidates": candidates,
        }
        return _dump(record, fmt)
    verdict = "admitted" if explanation.admitted else "rejected"
    parts = [
        f"{verdict} (policy {explanation.policy_version[:12] or '-'})",
        "",
        _table(reasons, REASON_COLUMNS),
    ]
    if candidates:
        parts += ["", _table(candidates, CANDIDATE_COLUMNS)]
    return "\n".join(parts)
