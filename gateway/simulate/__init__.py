"""The trace simulator: replay a GPU-cluster workload through the real placement code on a simulated clock.

Owns: reading a trace (CSV) and a federation of sites (YAML), the discrete-event replay in three modes
(siloed, federated, pooled) and the summary figures. It does no I/O beyond reading its two input files,
never sleeps and never touches a store or a network: `gateway.cli.simulate` and `bench.simulation` drive it.
"""

from __future__ import annotations

from gateway.simulate.engine import MODES, JobOutcome, Mode, SimulationResult, simulate
from gateway.simulate.report import ModeReport, summarise
from gateway.simulate.sites import PoolSpec, SiteSpec, load_sites, parse_sites
from gateway.simulate.trace import TRACE_HEADER, TraceJob, load_trace, parse_trace

__all__ = [
    "MODES",
    "TRACE_HEADER",
    "JobOutcome",
    "Mode",
    "ModeReport",
    "PoolSpec",
    "SimulationResult",
    "SiteSpec",
    "TraceJob",
    "load_sites",
    "load_trace",
    "parse_sites",
    "parse_trace",
    "simulate",
    "summarise",
]
