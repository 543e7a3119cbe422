"""Drive the demo: start the gateway and the agents as separate processes, submit the workload, follow it,
and stop every process it started, whatever happens (errors, Ctrl-C, SIGTERM).

Owns: process supervision and the demo's report. The federation's files come from `gateway.demo.layout`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from fedgate.common.shipped import shipped
from gateway.demo.layout import ENROLLING_SITE, SITES, DemoLayout, point_agents_at
from gateway.errors import ClientError, GatewayError
from gateway.jobs.model import Job, JobSpec, JobState
from gateway.jobs.specfile import load_job_spec
from gateway.transport.client import FederationClient
from gateway.trust.credentials import Credentials

EXAMPLES = shipped("examples") / "jobs"
# (example file, copies): a mix over both tenants that oversubscribes the H100 centre, so some jobs queue.
WORKLOAD = (
    ("llama-sft-ascend.yaml", 2),
    ("eval-h100.yaml", 2),
    ("gang-pretrain-cuda.yaml", 1),
    ("eval-any-64g.yaml", 2),
    ("moe-pretrain-k100.yaml", 2),
    ("smoke-h20.yaml", 1),
    ("two-node/job.yaml", 1),
)
TWO_NODE_PROGRAM = EXAMPLES / "two-node" / "rendezvous.py"
"""The two-node job's program, run inline (`python3 -c`) so no node needs a shared folder with it."""


class DemoFailed(Exception):
    pass


@dataclass
class Processes:
    logs: Path
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.children[name] = subprocess.Popen(
            [sys.executable, "-m", "fedgate.cli", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
        )

    def check_alive(self) -> None:
        for name, child in self.children.items():
            if child.poll() is not None:
                raise DemoFailed(f"{name} exited with code {child.returncode}; see {self.logs / (name + '.log')}")

    def kill(self, name: str) -> None:
        """kill -9 one child (the demo's leader), and stop supervising it."""
        child = self.children.pop(name)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()

    def stop_all(self, grace: float = 8.0) -> None:
        # Agents first so that they say goodbye to a live gateway, then the gateways.
        order = sorted(self.children, key=lambda n: n.startswith("gateway"))
        for name in order:
            child = self.children[name]
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for name in order:
            child = self.children[name]
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


@contextmanager
def supervised(logs: Path) -> Iterator[Processes]:
    logs.mkdir(parents=True, exist_ok=True)
    processes = Processes(logs)

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield processes
    finally:
        processes.stop_all()
        signal.signal(signal.SIGTERM, previous)


def wait_for(what: str, check: object, timeout: float, processes: Processes) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes.check_alive()
        if check():
            return
        time.sleep(0.1)
    raise DemoFailed(f"timed out after {timeout:.0f} s waiting for {what}")


def start_federation(layout: DemoLayout, processes: Processes) -> list[str]:
    """Start the gateways (the first one leads: the others start once it does), enrol the joining centre, start
    the agents. Returns the gateways' addresses, the leader's first."""
    addresses: list[str] = []
    publics: list[str] = []
    for config, ready in zip(layout.gateway_configs, layout.ready_files, strict=True):
        processes.start(config.stem, "gateway", "run", "--config", str(config), "--ready-file", str(ready))
        wait_for(f"{config.stem} to listen", ready.exists, 30, processes)
        lines = ready.read_text().split()
        addresses.append(lines[0])
        publics.append(next(line.removeprefix("public=") for line in lines if line.startswith("public=")))
        if len(addresses) == 1:
            with FederationClient(addresses[0], Credentials.from_dir(layout.admin_creds), timeout=5) as admin:
                wait_for(f"{config.stem} to lead", lambda: answers(admin), 30, processes)
    point_agents_at(layout, addresses)
    enroll(layout, addresses[0], publics[0])
    for site, config in layout.agent_configs.items():
        processes.start(site, "agent", "run", "--config", str(config))
    return addresses


def answers(client: FederationClient) -> bool:
    """Whether a gateway (the leader, when there are several) answers now."""
    try:
        client.policy_status()
    except ClientError as exc:
        if exc.code == "UNAVAILABLE":
            return False
        raise
    return True


def enroll(layout: DemoLayout, address: str, public: str) -> None:
    """The double opt-in: the admin makes a one-time token for the site; the site makes its own key and
    enrols over the public port, having checked the gateway against the pinned CA fingerprint."""
    with FederationClient(address, Credentials.from_dir(layout.admin_creds), timeout=10) as admin:
        joined = admin.create_join_token(ENROLLING_SITE)
    out = layout.agent_configs[ENROLLING_SITE].parent
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedgate.cli",
            "agent",
            "enroll",
            "--gateway",
            public,
            "--site",
            ENROLLING_SITE,
            "--token",
            joined.token,
            "--ca-fingerprint",
            joined.ca_fingerprint,
            "--out",
            str(out),
            "--force",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise DemoFailed(f"{ENROLLING_SITE} could not enrol: {result.stderr.strip() or result.stdout.strip()}")


def workload() -> list[JobSpec]:
    specs = []
    for name, copies in WORKLOAD:
        spec = load_job_spec(EXAMPLES / name)
        if name.startswith("two-node/"):
            run = replace(spec.runs[0], command=("python3", "-c", TWO_NODE_PROGRAM.read_text()))
            spec = replace(spec, runs=(run,))
        specs.extend([spec] * copies)
    return specs


def sites_ready(admin: FederationClient) -> bool:
    ready = {s.name for s in admin.list_sites() if s.connected and s.pools}
    return ready >= {s.name for s in SITES}


def follow(
    jobs: list[Job],
    admin: FederationClient,
    layout: DemoLayout,
    processes: Processes,
    deadline: float,
    started: float,
    say: Callable[[str], None],
) -> list[Job]:
    """Print progress until every job has ended. With several gateways, kill -9 the leader once jobs run, and
    say when the standby leads (the reads go on meanwhile: a standby answers them from the shared store)."""
    last = ""
    killed_at: float | None = None
    while True:
        processes.check_alive()
        try:
            current = [admin.get_job(j.job_id) for j in jobs]
        except ClientError as exc:
            if exc.code not in TAKEOVER_CODES or killed_at is None:
                raise
            time.sleep(0.25)  # the standby is switching to lead: its port closes for a moment
            continue
        line = progress_line(current, time.monotonic() - started)
        if line.split("] ", 1)[1] != last:
            say(line)
            last = line.split("] ", 1)[1]
        if all(j.state.terminal for j in current):
            return current
        if killed_at is not None and answers(admin):
            say(f"the standby took over: it leads {time.monotonic() - killed_at:.1f}s after the kill")
            killed_at = None
        if killed_at is None and len(layout.gateway_configs) > 1 and any(j.state == JobState.RUNNING for j in current):
            leader = layout.gateway_configs[0].stem
            if leader in processes.children:
                processes.kill(leader)
                killed_at = time.monotonic()
                say(f"killed the leader ({leader}) with SIGKILL while jobs run; the standby answers reads meanwhile")
        if time.monotonic() > deadline:
            waiting = [
                f"{j.job_id} {j.spec.name} {j.state.value}: {why_there(j) or 'no reason given'}"
                for j in current
                if not j.state.terminal
            ]
            raise DemoFailed(f"jobs still running after {time.monotonic() - started:.0f} s:\n  " + "\n  ".join(waiting))
        time.sleep(0.25)


TAKEOVER_CODES = frozenset({"UNAVAILABLE", "CANCELLED"})
"""What a read may meet while the standby takes over: no gateway answering, or a call in flight when the standby
closed its port to reopen it as the leader (gRPC ends that call CANCELLED; CI met it once). Both are read again."""


def progress_line(jobs: list[Job], elapsed: float) -> str:
    counts = Counter(j.state.value for j in jobs)
    order = [s.value for s in JobState]
    parts = [f"{counts[s]} {s.lower()}" for s in order if counts[s]]
    return f"[{elapsed:5.1f}s] " + ", ".join(parts)


def run_demo(layout: DemoLayout, timeout: float, out: object = sys.stdout) -> int:
    started = time.monotonic()

    def say(text: str) -> None:
        print(text, file=out, flush=True)  # type: ignore[call-overload]

    from gateway.cli import output

    with supervised(layout.root / "logs") as processes:
        addresses = start_federation(layout, processes)
        address = ",".join(addresses)  # the clients follow the leader among them
        if len(addresses) == 1:
            say(f"gateway of federation 'demo' on {address} (mTLS); CA and certificates in {layout.root}")
        else:
            say(
                f"{len(addresses)} gateways of federation 'demo' on one PostgreSQL: {addresses[0]} leads, "
                f"{', '.join(addresses[1:])} stands by; CA and certificates in {layout.root}"
            )
        say(f"{ENROLLING_SITE} enrolled with a one-time join token; its key never left it")
        admin = FederationClient(address, Credentials.from_dir(layout.admin_creds), timeout=10)
        clients = {
            t: FederationClient(address, Credentials.from_dir(p), timeout=10) for t, p in layout.user_creds.items()
        }
        try:
            wait_for("three agents to connect and report capacity", lambda: sites_ready(admin), 30, processes)
            sites = admin.list_sites()
            say(
                output.render(
                    [r for s in sites for r in output.site_rows(s)],
                    [
                        ("site", "SITE"),
                        ("class", "CLASS"),
                        ("total", "TOTAL"),
                        ("offered", "OFFERED"),
                        ("free", "FREE"),
                    ],
                    "table",
                )
            )
            jobs = [clients[spec.tenant].create_job(spec) for spec in workload()]
            say(f"submitted {len(jobs)} jobs from {len({j.spec.tenant for j in jobs})} tenants")
            current = follow(jobs, admin, layout, processes, time.monotonic() + timeout, started, say)
            say("")
            say(output.render([demo_row(j) for j in current], DEMO_COLUMNS, "table"))
            for job in current:
                if job.state == JobState.SUCCEEDED and any(p.nodes > 1 for p in job.placements):
                    say(f"{job.spec.name} ({job.job_id}), one line per node:")
                    for line in world_lines(clients[job.spec.tenant], job.job_id):
                        say(f"  {line}")
        finally:
            admin.close()
            for client in clients.values():
                client.close()
    succeeded = sum(j.state == JobState.SUCCEEDED for j in current)
    used_sites = {p.site for j in current if j.state == JobState.SUCCEEDED for p in j.placements}
    elapsed = time.monotonic() - started
    say(f"demo: {succeeded}/{len(current)} jobs succeeded across {len(used_sites)} sites in {elapsed:.1f}s")
    return 0 if succeeded == len(current) else 1


def world_lines(client: FederationClient, job_id: str) -> list[str]:
    """What each node of a multi-node job said about the world it joined (its logs' `world agreed` lines)."""
    output = b"".join(piece.data for piece in client.stream_job_logs(job_id, timeout=10)).decode(errors="replace")
    return sorted(line for line in output.splitlines() if "world agreed" in line)


DEMO_COLUMNS = [
    ("job_id", "JOB"),
    ("tenant", "TENANT"),
    ("name", "NAME"),
    ("asked", "ASKED FOR"),
    ("site", "RAN AT"),
    ("state", "STATE"),
    ("why", "WHY THERE"),
]


def why_there(job: Job) -> str:
    """A human answer from the job's own record: who offers what it asked for, and whether it had to wait."""
    if not job.placements:
        return job.reasons[-1].message if job.reasons else ""
    cls = job.placements[0].accelerator_class
    offering = [s.name for s in SITES if any(pool[0] == cls for pool in s.pools)]
    where = f"only {offering[0]} offers {cls}" if len(offering) == 1 else f"best fit among {', '.join(offering)}"
    nodes = sum(max(p.nodes, 1) for p in job.placements)
    if len(job.placements) == 1 and nodes > 1:
        where = f"{where}; {nodes} whole nodes of one centre, one task per node, ranks 0-{nodes - 1}"
    if len(job.placements) > 1:  # a gang: reserved at every site in two phases, launched with one epoch
        where = f"gang over {len(job.placements)} centres: no single one offers {job.spec.resources.cards} x {cls}"
    if not job.spec.resources.accelerator_class:
        where = f"{cls} meets the capability; {where}"
    if job.start_time is not None and (job.start_time - job.create_time).total_seconds() >= 2:
        where += f"; waited {(job.start_time - job.create_time).total_seconds():.0f}s for free cards"
    return where


def demo_row(job: Job) -> dict[str, object]:
    res = job.spec.resources
    if res.accelerator_class:
        asked = f"{res.cards} x {res.accelerator_class}"
    else:
        cap = res.capability
        stacks = "/".join(cap.stacks) if cap else "any"
        asked = f"{res.cards} x >={cap.min_memory_gib if cap else 0:g}GiB {stacks}"
    return {
        "job_id": job.job_id,
        "tenant": job.spec.tenant,
        "name": job.spec.name,
        "asked": asked,
        "site": ", ".join(
            f"{p.site} ({p.cards} x {p.accelerator_class}{f' on {p.nodes} nodes' if p.nodes > 1 else ''})"
            for p in job.placements
        )
        or "-",
        "state": job.state.value
        + (f" (exit {job.exit_code})" if job.state == JobState.FAILED and job.exit_code is not None else ""),
        "why": why_there(job),
    }


__all__ = ["DemoFailed", "GatewayError", "run_demo"]
