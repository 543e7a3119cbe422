"""The figures of one simulated mode: queueing delay, job completion time, utilisation.

Owns: turning outcomes into numbers, with the definitions in one place. wait = start - submit; JCT = finish -
submit; utilisation = busy card-seconds / (all cards x makespan), makespan = last finish - first submit, over
the jobs that ran. Window utilisation: the same over the arrival window only, from the 5th to the 95th
percentile submit time, counting only the card-seconds inside it: a trace with a long quiet lead-in or one
very long job makes plain utilisation small however busy the cluster was while work arrived. p95 is the
nearest-rank 95th percentile. Unschedulable jobs are counted, not averaged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gateway.simulate.engine import SimulationResult


@dataclass(frozen=True)
class ModeReport:
    mode: str
    jobs: int  # jobs that ran
    unschedulable: int
    mean_wait_s: float
    p95_wait_s: float
    max_wait_s: float
    mean_jct_s: float
    utilisation: float  # 0..1
    makespan_s: float
    window_utilisation: float = 0.0  # 0..1, over the arrival window (see the module docstring)

    def to_json(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "unschedulable": self.unschedulable,
            "mean_wait_s": self.mean_wait_s,
            "p95_wait_s": self.p95_wait_s,
            "max_wait_s": self.max_wait_s,
            "mean_jct_s": self.mean_jct_s,
            "utilisation": self.utilisation,
            "makespan_s": self.makespan_s,
            "window_utilisation": self.window_utilisation,
        }


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of `values` (0 for none); `share` in (0, 1]."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def summarise(result: SimulationResult) -> ModeReport:
    ran = [o for o in result.outcomes if o.scheduled]
    waits = [o.wait_s for o in ran]
    jcts = [o.finish_s - o.job.submit_s for o in ran]
    busy = sum(o.job.cards * o.job.duration_s for o in ran)
    makespan = (max(o.finish_s for o in ran) - min(o.job.submit_s for o in ran)) if ran else 0.0
    capacity = result.total_cards * makespan
    return ModeReport(
        mode=result.mode,
        jobs=len(ran),
        unschedulable=len(result.outcomes) - len(ran),
        mean_wait_s=sum(waits) / len(waits) if waits else 0.0,
        p95_wait_s=percentile(waits, 0.95),
        max_wait_s=max(waits, default=0.0),
        mean_jct_s=sum(jcts) / len(jcts) if jcts else 0.0,
        utilisation=busy / capacity if capacity > 0 else 0.0,
        makespan_s=makespan,
        window_utilisation=window_utilisation(result),
    )


def window_utilisation(result: SimulationResult) -> float:
    """Busy card-seconds inside [p5 submit, p95 submit] / (all cards x that window); 0 when it is empty."""
    ran = [o for o in result.outcomes if o.scheduled]
    submits = [o.job.submit_s for o in ran]
    start, end = percentile(submits, 0.05), percentile(submits, 0.95)
    if end <= start or result.total_cards == 0:
        return 0.0
    busy = sum(o.job.cards * max(0.0, min(o.finish_s, end) - max(o.start_s or 0.0, start)) for o in ran)
    return busy / (result.total_cards * (end - start))
