"""Durable admission on PostgreSQL next to the same on SQLite, in one run: `admission_postgres.vs_sqlite`.

Owns: a throw-away PostgreSQL cluster for the run (`gateway.demo.pgcluster`: initdb in a temp dir, fsync and
synchronous_commit on, the server run as `postgres` when the bench runs as root), a fresh database per gateway
run, the runs themselves (the admission benchmark's gateway process and client, `bench.admission`, closed loop
at the plan's concurrency), alternating SQLite and PostgreSQL so that drift of the machine's speed hits both,
and the durability check on PostgreSQL: after the gateway stopped, its database's `jobs` table must hold one row
per call made. A gateway on PostgreSQL is a replica that elects itself leader (alone, at once) before it says
it is ready. Target (issue 16): PostgreSQL at 70 % or more of SQLite's jobs/s.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.admission import (
    DEFAULT_CONCURRENCY,
    DEFAULT_PLAN,
    Mode,
    Plan,
    Store,
    make_pki,
    run_admission,
    sqlite_store,
    store_row,
)
from bench.report import Row, render_notes, render_table, row_to_json
from gateway.demo.pgcluster import PgCluster, PostgresUnavailable, start_cluster

TARGET_VS_SQLITE = 0.70
ROUNDS = 2  # SQLite then PostgreSQL, then PostgreSQL then SQLite


def postgres_store(cluster: PgCluster) -> Callable[[Path], Store]:
    """A fresh database on `cluster` for each gateway run, counted over SQL once the gateway stopped."""

    def make(workdir: Path) -> Store:
        name = f"bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = cluster.url(name)

        def count() -> int:
            with psycopg.connect(url) as conn:
                row = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()
            return int(row[0]) if row else 0

        return Store(url, count)

    return make


@dataclass
class PostgresBench:
    plan: Plan
    concurrency: int
    rows: list[Row] = field(default_factory=list)  # in the order run, engine named in `benchmark`
    skipped: str = ""  # why PostgreSQL could not run here

    def _rps(self, engine: str) -> list[float]:
        return [r.result.rps for r in self.rows if r.benchmark == f"admission {engine}"]

    @property
    def vs_sqlite(self) -> float | None:
        pg, lite = self._rps("postgres"), self._rps("sqlite")
        if not pg or not lite or statistics.median(lite) == 0:
            return None
        return statistics.median(pg) / statistics.median(lite)

    @property
    def correct(self) -> bool:
        return all(row.correct for row in self.rows)

    def summary(self) -> dict[str, float | None]:
        return {"admission_postgres.vs_sqlite": self.vs_sqlite}

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": {"jobs": self.plan.jobs, "warmup": self.plan.warmup, "concurrency": self.concurrency},
            "target_vs_sqlite": TARGET_VS_SQLITE,
            "runs": [row_to_json(row) for row in self.rows],
            "median_rps": {e: statistics.median(self._rps(e)) for e in ("sqlite", "postgres") if self._rps(e)},
            "vs_sqlite": self.vs_sqlite,
            **({"skipped": self.skipped} if self.skipped else {}),
        }

    def render(self) -> str:
        if self.skipped:
            return f"admission on PostgreSQL: not measured: {self.skipped}"
        lines = [render_table(self.rows), *render_notes(self.rows, self.plan.max_seconds)]
        ratio = self.vs_sqlite
        if ratio is None:
            lines.append("admission on PostgreSQL vs SQLite: no ratio (a run made no call)")
        else:
            verdict = "met" if ratio >= TARGET_VS_SQLITE else "MISSED"
            pg, lite = statistics.median(self._rps("postgres")), statistics.median(self._rps("sqlite"))
            lines.append(
                f"admission on PostgreSQL vs SQLite (medians, runs alternated): {pg:,.0f} / {lite:,.0f} jobs/s ="
                f" {ratio:.2f}; target >= {TARGET_VS_SQLITE:.2f}: {verdict}"
            )
        return "\n".join(lines)


def run(
    workdir: Path,
    progress: Callable[[str], None],
    plan: Plan = DEFAULT_PLAN,
    concurrency: int = DEFAULT_CONCURRENCY,
    rounds: int = ROUNDS,
) -> PostgresBench:
    bench = PostgresBench(plan, concurrency)
    try:
        cluster = start_cluster(PgCluster)
    except PostgresUnavailable as exc:
        bench.skipped = f"no PostgreSQL here: {exc}"
        progress(f"admission_postgres: {bench.skipped}")
        return bench
    try:
        pki = make_pki(workdir / "pki")
        mode = Mode(f"c={concurrency}", concurrency)
        engines: dict[str, tuple[Callable[[Path], Store], str]] = {
            "sqlite": (sqlite_store, "SQLite"),
            "postgres": (postgres_store(cluster), "PostgreSQL"),
        }
        for i in range(rounds):
            for engine in ("sqlite", "postgres") if i % 2 == 0 else ("postgres", "sqlite"):
                store, label = engines[engine]
                progress(f"admission on {label} {mode.name}: fresh gateway, {plan.warmup} warm-up + {plan.jobs} calls")
                done = run_admission(pki, workdir / f"{engine}-{i}", mode, plan, store=store)
                bench.rows.append(store_row(f"admission {engine}", mode, plan, done, label))
    finally:
        cluster.destroy()
    return bench
