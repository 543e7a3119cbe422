"""Job submission into Slurm next to fedgate's durable admission, with 4 submitters each: `slurm.*`.

Owns: a one-node Slurm started for the run (Debian's slurm-wlm 22.05 with munge, the tests' private cluster:
`tests/slurmcluster.py`, imported from there so that the bench and the tests start Slurm one way), 4 submitter
threads each running `sbatch --hold --parsable --wrap true` one job after another (a fresh `sbatch` process per
job, as a user or a script submits) until JOBS jobs are in, the check that every one of them is in the
controller and held (`squeue`: PENDING, reason JobHeldUser), and the baseline in the same run: a fresh
fedgate gateway (SQLite, durable) taking the same number of CreateJob calls from the admission benchmark's
client with 4 in flight. Held jobs never start, so Slurm's figure is its controller accepting and saving jobs,
as fedgate's is admission; fedgate's client keeps one channel open while each sbatch is a new process that
connects and authenticates (munge) afresh: that is how each system is used. Target (issue 16): fedgate takes
jobs at least 2x as fast. When Slurm cannot start here, the run says why and both figures stay None.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.admission import AdmissionRun, Mode, Plan, make_pki, run_admission
from bench.load import percentile
from tests.slurmcluster import ClusterUnavailable, SlurmCluster, start_cluster

SUBMITTERS = 4
JOBS = 400  # measured submissions to each system
WARMUP = 20  # before the clock starts, to each system (Slurm: the controller's first RPCs; fedgate: caches)
TARGET_FEDGATE_VS_SLURM = 2.0
JOB_NAME = "fedgate-bench"


@dataclass(frozen=True)
class Submissions:
    """`sbatch` calls made by the submitters: job ids in order of completion, per-call seconds, failures."""

    ids: list[str]
    seconds: float  # wall time from the first submission to the last reply
    latencies: list[float]  # one per sbatch, seconds
    failures: list[str]

    @property
    def jobs_per_s(self) -> float:
        return len(self.ids) / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class HeldCheck:
    submitted: int  # jobs the submitters were told were accepted, warm-up included
    held: int  # of those, PENDING with reason JobHeldUser in squeue afterwards
    other: dict[str, int]  # any other state|reason seen, with its count

    @property
    def ok(self) -> bool:
        return self.held == self.submitted and not self.other


@dataclass
class SlurmBench:
    slurm: Submissions | None = None
    held: HeldCheck | None = None
    fedgate: AdmissionRun | None = None
    version: str = ""
    skipped: str = ""  # why Slurm could not be measured here
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.slurm is None or self.fedgate is None or self.slurm.jobs_per_s == 0:
            return None
        return self.fedgate.result.rps / self.slurm.jobs_per_s

    @property
    def correct(self) -> bool:
        slurm_ok = self.slurm is None or (not self.slurm.failures and self.held is not None and self.held.ok)
        fed = self.fedgate
        return slurm_ok and (fed is None or (fed.result.errors == 0 and fed.store.ok))

    def summary(self) -> dict[str, float | None]:
        return {
            "slurm.submit_jobs_per_s": self.slurm.jobs_per_s if self.slurm else None,
            "slurm.fedgate_vs_slurm": self.ratio,
        }

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "submitters": SUBMITTERS,
            "jobs": JOBS,
            "warmup": WARMUP,
            "slurm_version": self.version,
            "target_fedgate_vs_slurm": TARGET_FEDGATE_VS_SLURM,
        }
        if self.skipped:
            document["skipped"] = self.skipped
        if self.slurm is not None:
            ms = sorted(x * 1000 for x in self.slurm.latencies)
            document["slurm"] = {
                "jobs": len(self.slurm.ids),
                "seconds": self.slurm.seconds,
                "jobs_per_s": self.slurm.jobs_per_s,
                "p50_ms": percentile(ms, 50),
                "p99_ms": percentile(ms, 99),
                "failures": len(self.slurm.failures),
                "first_failure": self.slurm.failures[0] if self.slurm.failures else "",
            }
        if self.held is not None:
            document["held_check"] = {
                "submitted": self.held.submitted,
                "held": self.held.held,
                "other": self.held.other,
                "ok": self.held.ok,
            }
        if self.fedgate is not None:
            r = self.fedgate.result
            document["fedgate"] = {
                "jobs": r.requests,
                "seconds": r.seconds,
                "jobs_per_s": r.rps,
                "p50_ms": r.p50_ms,
                "p99_ms": r.p99_ms,
                "errors": r.errors,
                "store_expected_jobs": self.fedgate.store.expected,
                "store_jobs": self.fedgate.store.found,
            }
        document["fedgate_vs_slurm"] = self.ratio
        return document

    def render(self) -> str:
        lines = [f"job submission, {SUBMITTERS} submitters, {JOBS} jobs each system ({WARMUP} warm-up first):"]
        if self.skipped:
            lines.append(f"  Slurm not measured: {self.skipped}")
        lines.append(f"  {'system':<38} | {'jobs':>5} | {'jobs/s':>7} | {'p50 ms':>7} | {'p99 ms':>7}")
        if self.slurm is not None:
            ms = sorted(x * 1000 for x in self.slurm.latencies)
            lines.append(
                f"  {'sbatch --hold (' + self.version + ')':<38} | {len(self.slurm.ids):>5} |"
                f" {self.slurm.jobs_per_s:>7,.0f} | {percentile(ms, 50):>7.1f} | {percentile(ms, 99):>7.1f}"
            )
        if self.fedgate is not None:
            r = self.fedgate.result
            lines.append(
                f"  {'fedgate CreateJob, durable (SQLite)':<38} | {r.requests:>5} | {r.rps:>7,.0f} |"
                f" {r.p50_ms:>7.1f} | {r.p99_ms:>7.1f}"
            )
        ratio = self.ratio
        if ratio is not None:
            verdict = "met" if ratio >= TARGET_FEDGATE_VS_SLURM else "MISSED"
            lines.append(f"  fedgate / Slurm = {ratio:.2f} x; target >= {TARGET_FEDGATE_VS_SLURM:g} x: {verdict}")
        if self.held is not None:
            h = self.held
            lines.append(
                f"  squeue afterwards: {h.held} of {h.submitted} submitted jobs held (PENDING, JobHeldUser)"
                + ("" if h.ok else f"; NOT CORRECT, also seen: {h.other}")
            )
        if self.slurm is not None and self.slurm.failures:
            lines.append(f"! {len(self.slurm.failures)} sbatch calls failed, first: {self.slurm.failures[0]}")
        if self.fedgate is not None:
            store = self.fedgate.store
            lines.append(f"  {store.found} jobs in the stopped gateway's SQLite for {store.expected} calls")
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)


def submit(cluster: SlurmCluster, count: int, submitters: int) -> Submissions:
    """`count` held jobs through `submitters` threads, each running one sbatch after another."""
    argv = ["sbatch", "--hold", "--parsable", "-J", JOB_NAME, "-p", cluster.partition, "-o", "/dev/null"]
    argv += ["--wrap", "true"]
    remaining = iter(range(count))
    lock = threading.Lock()
    ids: list[str] = []
    latencies: list[float] = []
    failures: list[str] = []

    def submitter() -> None:
        while True:
            with lock:
                if next(remaining, None) is None:
                    return
            began = time.perf_counter()
            done = subprocess.run(argv, env=cluster.env, capture_output=True, text=True, timeout=60, check=False)
            took = time.perf_counter() - began
            with lock:
                latencies.append(took)
                if done.returncode == 0:
                    ids.append(done.stdout.strip().split(";")[0])
                else:
                    failures.append(f"exit {done.returncode}: {done.stderr.strip()}")

    threads = [threading.Thread(target=submitter, name=f"sbatch-{i}") for i in range(submitters)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Submissions(ids, time.perf_counter() - began, latencies, failures)


def check_held(cluster: SlurmCluster, ids: list[str]) -> HeldCheck:
    """Every submitted job, as the controller reports it: PENDING and held by its user."""
    out = cluster.command("squeue", "--noheader", "--states=all", f"--name={JOB_NAME}", "--format=%i|%T|%r")
    seen = dict(line.split("|", 1) for line in out.split() if "|" in line)
    held, other = 0, dict[str, int]()
    for job in ids:
        status = seen.get(job, "MISSING|")
        if status == "PENDING|JobHeldUser":
            held += 1
        else:
            other[status] = other.get(status, 0) + 1
    return HeldCheck(len(ids), held, other)


def run(workdir: Path, progress: Callable[[str], None]) -> SlurmBench:
    bench = SlurmBench()
    try:
        progress("slurm: starting a one-node Slurm (munged, slurmctld, slurmd)")
        cluster = start_cluster(node_count=1)
    except (ClusterUnavailable, RuntimeError) as exc:
        bench.skipped = f"Slurm could not start here: {str(exc).splitlines()[0]}"
        progress(f"slurm: {bench.skipped}")
    else:
        try:
            bench.version = cluster.command("sbatch", "--version").strip()
            progress(f"slurm: {WARMUP} warm-up, then {JOBS} x sbatch --hold from {SUBMITTERS} submitters")
            warm = submit(cluster, WARMUP, SUBMITTERS)
            measured = submit(cluster, JOBS, SUBMITTERS)
            bench.slurm = measured
            bench.held = check_held(cluster, warm.ids + measured.ids)
            if warm.failures:
                bench.notes.append(f"{len(warm.failures)} warm-up sbatch calls failed, first: {warm.failures[0]}")
        finally:
            cluster.stop()
    progress(f"slurm: baseline, fedgate gateway, {WARMUP} warm-up + {JOBS} CreateJob with {SUBMITTERS} in flight")
    plan = Plan(jobs=JOBS, warmup=WARMUP, max_seconds=None)
    bench.fedgate = run_admission(make_pki(workdir / "pki"), workdir / "fedgate", Mode("c=4", SUBMITTERS), plan)
    return bench
