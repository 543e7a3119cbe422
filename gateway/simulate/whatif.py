"""What-if answers: the figures of two twin runs of one trace side by side, A, B and the change.

Owns: pairing the groups of two `summarise_twin` summaries (the whole run, each tenant, each accelerator class,
each priority class) and the change of each figure: B - A, and for the waits also the relative change in %
(None when A's wait is 0: no ratio to a zero). A group in only one run counts as empty (no jobs, zeros) in the
other, e.g. a class only a new centre has. It runs nothing: `gateway.cli.simulate` runs the twin under A's
and B's inputs and hands the two summaries here.
"""

from __future__ import annotations

from typing import Any

METRICS = ("jobs", "mean_wait_s", "p95_wait_s", "utilisation", "card_hours", "rejected", "never_started")
"""The figures compared, each as A, B and change (names as in `twinreport.GroupReport`)."""
RELATIVE = ("mean_wait_s", "p95_wait_s")
"""The figures whose change is also given in % of A (`<name>_pct`)."""
SCOPES = (("all", "total"), ("tenant", "tenants"), ("accelerator", "accelerators"), ("class", "classes"))
"""Group kinds (the `by` of a compared group) and the key of their groups in a twin summary, in output order."""


def _empty(name: str) -> dict[str, Any]:
    return {"group": name, **{m: 0 for m in METRICS}}


def _figures(group: dict[str, Any]) -> dict[str, Any]:
    return {m: group[m] for m in METRICS}


def change(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """B - A of every figure, plus `<wait>_pct`: the relative change of each wait in % (None when A's is 0)."""
    delta: dict[str, Any] = {m: b[m] - a[m] for m in METRICS}
    for m in RELATIVE:
        delta[f"{m}_pct"] = (b[m] - a[m]) / a[m] * 100 if a[m] else None
    return delta


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """The compared groups of two twin summaries of one mode: `{"by", "name", "a", "b", "change"}` each, by kind
    in `SCOPES` order, then by name."""
    groups: list[dict[str, Any]] = []
    for by, key in SCOPES:
        if by == "all":
            pairs = [("all", a[key], b[key])]
        else:
            in_a = {g["group"]: g for g in a[key]}
            in_b = {g["group"]: g for g in b[key]}
            names = sorted(in_a.keys() | in_b.keys())
            pairs = [(n, in_a.get(n, _empty(n)), in_b.get(n, _empty(n))) for n in names]
        for name, ga, gb in pairs:
            fa, fb = _figures(ga), _figures(gb)
            groups.append({"by": by, "name": name, "a": fa, "b": fb, "change": change(fa, fb)})
    return groups
