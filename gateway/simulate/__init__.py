"""The trace simulator: replay a GPU-cluster workload on a simulated clock, two ways.

Owns: reading and writing a trace (CSV), a federation of sites and the centres' own policies (YAML);
converters from public traces (`alibaba`, `philly`); the greedy engine (`engine`: the real placement function
alone, FIFO, in three modes: siloed, federated, pooled) and the what-if twin (`twin`: the gateway's whole
composed core, under a federation policy, over an in-memory store, with simulated centres, `simsites`), and
the summary figures of each, and the what-if comparison of two twin runs (`whatif`). It never sleeps and
never touches a network or a file beyond its inputs and the outputs it is asked to write:
`gateway.cli.simulate` and `bench.simulation` drive it.
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
