"""Site agents for chaos tests: real `fedgate agent run` processes on the `local` backend, and the jobs they run.

Owns: the chaos agent process (logs kept for failure messages, an extra environment such as a clock-skew
sitecustomize, cleanup that leaves no job process behind), the job every chaos test submits (it appends a
heartbeat on the machine's monotonic clock to `beats` in its attempt folder every 50 ms for a given time, then
exits 0), reading an agent's attempts back as (job, epoch) -> the span its heartbeats cover, and the
retrying submitters whose acknowledged jobs the invariants check.
It does not start gateways (`tests.chaos.fleet`) nor judge the outcome (`tests.chaos.invariants`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import ClientError
from gateway.jobs.model import JobSpec, Resources, StackRun, Topology
from gateway.transport.client import FederationClient
from tests.integration.harness import AgentProcess, Dialable

ASCEND = "ascend-910b"
TENANT, PROJECT = "deepsea-ai", "llama-sft"


def beating_job(seconds: float, cards: int = 1, gang: bool = False) -> JobSpec:
    """A job that beats for `seconds` and succeeds; `gang`: spread over two sites (at least `cards // 2` each)."""
    code = (
        "import time\n"
        f"end = time.monotonic() + {seconds}\n"
        "with open('beats', 'a') as out:\n"
        "    while time.monotonic() < end:\n"
        "        out.write(f'{time.monotonic()}\\n'); out.flush(); time.sleep(0.05)\n"
    )
    topology = Topology(max_sites=2, min_cards_per_site=cards // 2) if gang else Topology()
    return JobSpec(
        TENANT,
        PROJECT,
        Resources(ASCEND, None, cards),
        (StackRun("cann", "", ("python3", "-c", code)),),
        topology=topology,
    )


def pools(cards: int) -> list[dict[str, Any]]:
    return [{"class": ASCEND, "cards": cards, "offered": cards, "cards_per_node": cards}]


class ChaosAgent(AgentProcess):
    """An agent process (local backend) that a chaos test starts, stops, kills and starts again."""

    def __init__(self, gateway: Dialable, root: Path, site: str, cards: int = 2, env: dict[str, str] | None = None):
        super().__init__(gateway, root, site, pools(cards), report_interval_s=0.5)
        self.root = root
        self.env = env or {}
        self.log = root / "agent.log"

    def start(self) -> None:
        with self.log.open("a") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fedgate.cli", "agent", "run", "--config", str(self.config)],
                env={**os.environ, **self.env},
                stdout=subprocess.DEVNULL,
                stderr=err,
                text=True,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spans(self) -> dict[tuple[str, int], tuple[float, float]]:
        """(job id, epoch) -> (first, last) heartbeat of every attempt this agent started that beat at all."""
        out = {}
        for beats in self.jobs.glob("*/*/beats"):
            times = [float(x) for x in beats.read_text().split() if x.strip()]
            with contextlib.suppress(ValueError):
                if times:
                    out[(beats.parent.parent.name, int(beats.parent.name))] = (min(times), max(times))
        return out

    def live_groups(self) -> list[int]:
        groups = []
        for leader in self.jobs.glob("*/*/leader.json"):
            with contextlib.suppress(ValueError, KeyError, OSError):
                pid = int(json.loads(leader.read_text())["pid"])
                if _alive(pid):
                    groups.append(pid)
        return groups

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def end(self) -> None:
        """Kill the agent and whatever is left of its jobs (a test's cleanup)."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)
        for group in self.live_groups():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in {"Z", "X"}


@dataclass
class Submitters:
    """Threads that each submit `per_thread` jobs with fixed request ids, retrying each until the gateway
    replies (through kill -9s and restarts). `acknowledged`: request id -> job id, for the jobs that got a reply."""

    client: FederationClient
    spec: JobSpec
    threads: int = 2
    per_thread: int = 5
    deadline_s: float = 60
    prefix: str = "chaos"
    acknowledged: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Submitters:
        for t in range(self.threads):
            worker = threading.Thread(target=self._submit, args=(t,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def _submit(self, thread: int) -> None:
        end = time.monotonic() + self.deadline_s
        for i in range(self.per_thread):
            request_id = f"{self.prefix}-{thread}-{i}"
            while time.monotonic() < end:
                try:
                    job = self.client.create_job(self.spec, request_id=request_id)
                except ClientError as exc:  # the gateway is down or restarting: the same request again
                    last = str(exc)
                    time.sleep(0.1)  # a retry pace, not a synchronisation
                    continue
                with self._lock:
                    self.acknowledged[request_id] = job.job_id
                break
            else:
                self.errors.append(f"{request_id} never acknowledged: {last}")
                return

    def join(self, timeout: float = 90) -> dict[str, str]:
        for worker in self._workers:
            worker.join(timeout)
        assert not any(w.is_alive() for w in self._workers), "a submitter is still retrying"
        assert not self.errors, self.errors
        return dict(self.acknowledged)
