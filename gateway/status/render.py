"""The status page as one HTML document: no script, no external asset, the chart as inline SVG.

Owns: the page's layout and the bar chart of offered and free cards per site and accelerator class. Every
value from the federation is escaped; what to show is `gateway.status.view`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from html import escape
from typing import TypeVar

from gateway.jobs.model import Job
from gateway.status.view import Part, StatusView
from gateway.usage.model import UsageRow

T = TypeVar("T")
BAR_HEIGHT = 18
LABEL_WIDTH = 220
CHART_WIDTH = 460
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#1d2430;background:#f7f8fa}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;background:#fff;font-size:.9em}
th,td{border:1px solid #d5d9e0;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eef1f5}.muted{color:#66707f}.refused{color:#9a3412}
.legend span{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0 1em;vertical-align:middle}
svg text{font-size:12px;fill:#1d2430}
"""


def render_page(view: StatusView) -> str:
    sections = (
        _section("Sites: cards by accelerator class", view.sites, lambda _: _chart(view)),
        _section("Queue", view.queue, _queue),
        _section("Recent jobs", view.recent, _recent),
        _section(f"Usage since {view.usage_since:%Y-%m-%d %H:%M} UTC", view.usage, _usage),
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>fedgate status</title><style>{STYLE}</style></head><body>"
        f'<h1>fedgate status</h1><p class="muted">as seen by <code id="caller">{escape(view.caller.uri)}</code>'
        f" at {view.at:%Y-%m-%d %H:%M:%S} UTC</p>" + "".join(sections) + "</body></html>\n"
    )


def _section(title: str, part: Part[T], body: Callable[[tuple[T, ...]], str]) -> str:
    slug = title.split(":", maxsplit=1)[0].split(" ", maxsplit=1)[0].lower()
    head = f'<section id="{slug}"><h2>{escape(title)}</h2>'
    if part.refused:
        return head + f'<p class="refused">Not shown to you: {escape(part.refused)}</p></section>'
    more = '<p class="muted">(only the first pages are shown)</p>' if part.truncated else ""
    return head + body(part.items) + more + "</section>"


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], empty: str) -> str:
    cells = ["<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows]
    if not cells:
        return f'<p class="muted">{escape(empty)}</p>'
    head = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in headers) + "</tr>"
    return f"<table>{head}{''.join(cells)}</table>"


def _chart(view: StatusView) -> str:
    """Per site and class, a bar of offered cards with the free ones drawn over it, and a table of the same."""
    bars = [(site, pool) for site in view.sites.items for pool in site.pools]
    if not bars:
        return '<p class="muted">No site has reported capacity.</p>'
    scale = max(1, *(pool.offered for _, pool in bars))
    height = BAR_HEIGHT * 1.5 * len(bars) + 10
    shapes = []
    for row, (site, pool) in enumerate(bars):
        y = 5 + row * BAR_HEIGHT * 1.5
        offered = CHART_WIDTH * pool.offered / scale
        free = CHART_WIDTH * site.free_cards(pool) / scale
        label = f"{site.name} {pool.accelerator_class}"
        shapes.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 13}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{offered:.1f}" height="{BAR_HEIGHT}" fill="#9db4d6">'
            f"<title>{escape(label)}: {pool.offered} offered</title></rect>"
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{free:.1f}" height="{BAR_HEIGHT}" fill="#2f9e6b">'
            f"<title>{escape(label)}: {site.free_cards(pool)} free</title></rect>"
            f'<text x="{LABEL_WIDTH + offered + 6:.1f}" y="{y + 13}">{site.free_cards(pool)} / {pool.offered}</text>'
        )
    svg = (
        f'<svg id="cards-chart" role="img" aria-label="offered and free cards" width="{LABEL_WIDTH + CHART_WIDTH + 80}"'
        f' height="{height:.0f}" xmlns="http://www.w3.org/2000/svg">{"".join(shapes)}</svg>'
    )
    legend = (
        '<p class="legend"><span style="background:#9db4d6"></span>offered<span style="background:#2f9e6b">'
        "</span>free</p>"
    )
    rows = (
        (
            site.name,
            "draining" if site.draining else site.liveness if site.connected else "disconnected",
            pool.accelerator_class,
            pool.offered,
            site.free_cards(pool),
            site.leased_cards(pool.accelerator_class),
        )
        for site in view.sites.items
        for pool in site.pools
    )
    return svg + legend + _table(("site", "state", "class", "offered", "free", "leased"), rows, "")


def _reason(job: Job) -> str:
    return f"{job.reasons[-1].code}: {job.reasons[-1].message}" if job.reasons else "waiting for the next cycle"


def _queue(jobs: Sequence[Job]) -> str:
    rows = (
        (
            j.job_id,
            j.spec.tenant,
            j.spec.project,
            j.spec.resources.accelerator_class or "any",
            j.spec.resources.cards,
            _reason(j),
        )
        for j in jobs
    )
    return _table(("job", "tenant", "project", "class", "cards", "why it waits"), rows, "No job waits.")


def _recent(jobs: Sequence[Job]) -> str:
    rows = (
        (
            j.job_id,
            j.spec.name,
            j.spec.tenant,
            j.spec.project,
            j.state.value,
            ", ".join(j.sites),
            f"{j.update_time:%Y-%m-%d %H:%M:%S}",
        )
        for j in jobs
    )
    return _table(("job", "name", "tenant", "project", "state", "sites", "updated"), rows, "No jobs yet.")


def _usage(rows: Sequence[UsageRow]) -> str:
    cells = (
        (
            r.tenant,
            r.project,
            r.accelerator_class,
            f"{r.card_hours:.2f}",
            f"{r.normalised_pflops_hours:.2f}",
            r.attempts,
        )
        for r in rows
    )
    return _table(
        ("tenant", "project", "class", "card-hours", "PFLOPS-hours", "attempts"), cells, "No usage in this window."
    )
