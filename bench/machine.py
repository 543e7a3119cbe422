"""The machine a benchmark ran on: its facts, and how much of its CPU other work took during the run.

Owns: the facts recorded next to every figure (cores, CPU, Python, grpcio, date) and `CpuAudit`, which
compares the CPU time the whole machine spent busy (from /proc/stat) with the CPU time of this process and
its servers, so a run disturbed by other work says so instead of passing off noise as a result. It does not
pin CPUs or stop other work.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from types import TracebackType
from typing import Any

PROC_STAT = Path("/proc/stat")


def machine_facts() -> dict[str, Any]:
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "grpcio": version("grpcio"),
        "protobuf": version("protobuf"),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _machine_cpu() -> tuple[float, float] | None:
    """(busy, stolen) CPU seconds of the whole machine since boot, or None where /proc/stat is missing."""
    try:
        fields = PROC_STAT.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _own_cpu() -> float:
    """CPU seconds of this process and of the children it has waited for (the servers it stopped)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class CpuAudit:
    """`with CpuAudit() as audit:` around a run; afterwards `audit.foreign_share` is the part of the
    machine's CPU that other processes used meanwhile (0.0 to 1.0), None where it cannot be told."""

    wall_seconds: float = 0.0
    foreign_seconds: float | None = None  # busy CPU time not spent by this process or its servers
    stolen_seconds: float | None = None  # time the hypervisor gave our virtual CPUs to someone else
    _start: tuple[float, tuple[float, float] | None, float] | None = None

    def __enter__(self) -> CpuAudit:
        self._start = (time.monotonic(), _machine_cpu(), _own_cpu())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._start is not None
        wall, machine, own = self._start
        self.wall_seconds = time.monotonic() - wall
        end = _machine_cpu()
        if machine is not None and end is not None:
            self.foreign_seconds = max(0.0, (end[0] - machine[0]) - (_own_cpu() - own))
            self.stolen_seconds = end[1] - machine[1]

    @property
    def foreign_share(self) -> float | None:
        return self._share(self.foreign_seconds)

    @property
    def stolen_share(self) -> float | None:
        return self._share(self.stolen_seconds)

    def _share(self, cpu_seconds: float | None) -> float | None:
        if cpu_seconds is None or self.wall_seconds <= 0:
            return None
        return cpu_seconds / (self.wall_seconds * len(os.sched_getaffinity(0)))

    def to_json(self) -> dict[str, Any]:
        return {
            "wall_seconds": self.wall_seconds,
            "foreign_cpu_seconds": self.foreign_seconds,
            "stolen_cpu_seconds": self.stolen_seconds,
            "foreign_share": self.foreign_share,
            "stolen_share": self.stolen_share,
        }
