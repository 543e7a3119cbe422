"""The figures of a twin run: per job, and summed per tenant, per priority class and per accelerator class.

Owns: turning `TwinOutcome`s into numbers, with the definitions in one place (those of
`gateway.simulate.report`, extended): wait = first start - submit, over the jobs that started; p95 is the
nearest-rank 95th percentile; card-hours = cards x duration of the jobs that ran to the end (the work asked
for: a preempted attempt's lost time is not counted); utilisation = those card-seconds / (all cards x
makespan), makespan = last end - first submit over the jobs that ended. A group's utilisation is its share of
the whole federation's cards over the same makespan. Rejected (refused at admission) and never started jobs
are counted, not averaged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gateway.simulate.report import percentile
from gateway.simulate.twinjobs import TwinOutcome, TwinResult

NEVER_STARTED = "NEVER_STARTED"


@dataclass(frozen=True)
class GroupReport:
    group: str
    jobs: int
    started: int
    rejected: int
    never_started: int
    preemptions: int
    mean_wait_s: float
    p95_wait_s: float
    card_hours: float
    utilisation: float

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "jobs": self.jobs,
            "started": self.started,
            "rejected": self.rejected,
            "never_started": self.never_started,
            "preemptions": self.preemptions,
            "mean_wait_s": self.mean_wait_s,
            "p95_wait_s": self.p95_wait_s,
            "card_hours": self.card_hours,
            "utilisation": self.utilisation,
        }


def makespan(outcomes: Iterable[TwinOutcome]) -> float:
    ended = [o for o in outcomes if o.end_s is not None]
    if not ended:
        return 0.0
    return max(o.end_s or 0.0 for o in ended) - min(o.submit_s for o in ended)


def group(name: str, outcomes: list[TwinOutcome], total_cards: int, span: float) -> GroupReport:
    waits = [o.wait_s for o in outcomes if o.wait_s is not None]
    done = [o for o in outcomes if o.state == "SUCCEEDED"]
    busy = sum(o.cards * o.duration_s for o in done)
    capacity = total_cards * span
    return GroupReport(
        group=name,
        jobs=len(outcomes),
        started=len(waits),
        rejected=sum(1 for o in outcomes if o.state == "REJECTED"),
        never_started=sum(1 for o in outcomes if o.state == NEVER_STARTED),
        preemptions=sum(o.preemptions for o in outcomes),
        mean_wait_s=sum(waits) / len(waits) if waits else 0.0,
        p95_wait_s=percentile(waits, 0.95),
        card_hours=busy / 3600,
        utilisation=busy / capacity if capacity > 0 else 0.0,
    )


def _by(outcomes: tuple[TwinOutcome, ...], key: Callable[[TwinOutcome], str]) -> dict[str, list[TwinOutcome]]:
    groups: dict[str, list[TwinOutcome]] = defaultdict(list)
    for outcome in outcomes:
        groups[key(outcome)].append(outcome)
    return dict(sorted(groups.items()))


def summarise_twin(result: TwinResult) -> dict[str, Any]:
    """The run's figures: `total` (one group of every job), `tenants`, `classes` (by priority class, "" shown as
    `default`), `accelerators` (by the class each job ran on or asked for: `TwinOutcome.accelerator_class`),
    `lease_returns` (launches a centre handed back: the gateway's view of its nodes was not the centre's), and
    `jobs` (one record per trace job, in trace order)."""
    span = makespan(result.outcomes)
    tenants = _by(result.outcomes, lambda o: o.tenant)
    classes = _by(result.outcomes, lambda o: o.priority_class or "default")
    accelerators = _by(result.outcomes, lambda o: o.accelerator_class or "any")
    return {
        "mode": result.mode,
        "total": group("all", list(result.outcomes), result.total_cards, span).to_json(),
        "makespan_s": span,
        "cycles": result.cycles,
        "lease_returns": len(result.returned),
        "tenants": [group(n, g, result.total_cards, span).to_json() for n, g in tenants.items()],
        "classes": [group(n, g, result.total_cards, span).to_json() for n, g in classes.items()],
        # A class's utilisation is of its own cards (all cards for jobs of any class that never started).
        "accelerators": [
            group(n, g, result.class_cards.get(n, result.total_cards), span).to_json() for n, g in accelerators.items()
        ],
        "jobs": [o.to_json() for o in result.outcomes],
    }
