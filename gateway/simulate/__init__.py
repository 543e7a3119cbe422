"""The trace simulator: replay a GPU-cluster workload through the real placement code on a simulated clock.

The folder holds: reading and writing a trace (CSV) and a federation of sites (YAML), converters from
public traces (`alibaba`, `philly`), the discrete-event replay in three modes (siloed, federated, pooled)
and the summary figures. Its only I/O is reading the files it is given and writing the ones it is asked to;
it never sleeps and never touches a store or a network: `gateway.cli.simulate` and `bench.simulation` drive it.
"""

from __future__ import annotations

from gateway.simulate.engine import MODES, JobOutcome, Mode, SimulationResult, simulate
from gateway.simulate.report import ModeReport, summarise
from gateway.simulate.sites import PoolSpec, SiteSpec, load_sites, parse_sites, write_sites
from gateway.simulate.trace import OPTIONAL_COLUMNS, TRACE_HEADER, TraceJob, load_trace, parse_trace, write_trace

__all__ = [
    "MODES",
    "OPTIONAL_COLUMNS",
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
    "write_sites",
    "write_trace",
]
