"""A real Slurm of several nodes on one machine (Debian's slurm-wlm 22.05) for tests: munged, slurmctld and one
slurmd per node in a temp dir.

Owns: writing the munge key, slurm.conf and gres.conf of a private cluster (own ports, own munge socket,
own state and spool dirs, fake GPUs as plain files), starting the daemons in the foreground as children of
the test process, waiting until every node is idle, and stopping every daemon it started. It does not decide
whether a missing Slurm skips or fails a test: `tests.conftest.require_service` does.

What the cluster offers: NODE_COUNT nodes (`fg1`, `fg2`, ...), each its own `slurmd -N <name>` on its own port,
all with this host's name and address 127.0.0.1 (so a job's processes on "different" nodes reach each other on
loopback), and each with 4 `gpu:h100` and 2 `gpu:a100` cards (plain files under `<root>/dev/<node>/`) and 16
CPUs by config (config_overrides, so the 2-core machine still takes many one-CPU jobs at once). Partitions:
`fedgate` (the default) and `short` (jobs of at most 5 minutes; with EnforcePartLimits=ALL sbatch refuses longer
ones) hold the first node alone, so tests of one-node behaviour see a one-node cluster; `multi` holds every
node, for multi-node jobs. Job completion records go to a text file so that `sacct --completion` answers
without slurmdbd.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PARTITION = "fedgate"
"""The default partition: the first node alone."""
SHORT_PARTITION = "short"
"""Same node, jobs of at most SHORT_MAX_MINUTES; with EnforcePartLimits=ALL sbatch refuses longer ones."""
SHORT_MAX_MINUTES = 5
MULTI_PARTITION = "multi"
"""Every node of the cluster, for multi-node jobs."""
NODE_COUNT = 2
"""Nodes of the cluster; each is a slurmd of its own (about 0.5 s of start-up each, started side by side)."""
GPUS = {"h100": 4, "a100": 2}
"""Gres type -> cards on each node."""
START_TIMEOUT_S = 60.0


class ClusterUnavailable(Exception):
    """Slurm or munge is not installed, or cannot run here (not root). The message says which."""


@dataclass
class SlurmCluster:
    """A running test cluster. `env` holds SLURM_CONF for every Slurm command a test runs."""

    root: Path
    conf: Path
    nodes: tuple[str, ...]
    """Every node's name, in order; the first is `partition`'s only node."""
    partition: str = PARTITION
    multi_partition: str = MULTI_PARTITION
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    """Daemon name (`munged`, `slurmctld`, `slurmd-<node>`) -> its process, in start order."""

    @property
    def node(self) -> str:
        """The node of the one-node partitions (`partition`, SHORT_PARTITION)."""
        return self.nodes[0]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def command(self, *args: str) -> str:
        """Run one Slurm client command against this cluster; its stdout, or an error with its stderr."""
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def jobs_named(self, name: str) -> list[str]:
        """Ids of every job (any state the controller still holds) called `name`."""
        out = self.command("squeue", "--noheader", "--states=all", f"--name={name}", "--format=%i")
        return out.split()

    def _end_all_jobs(self) -> None:
        """Cancel what tests left running: slurmstepd outlives slurmd, so jobs must end before it stops."""
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                jobs = self.command("squeue", "--noheader", "--format=%i").split()
                if not jobs:
                    return
                # By id and by state: a pending job cannot be signalled, a running one is killed outright.
                self.command("scancel", "--state=PENDING", *jobs)
                with contextlib.suppress(RuntimeError):
                    self.command("scancel", "--full", "--signal=KILL", "--state=RUNNING", *jobs)
                time.sleep(0.2)

    def log(self, daemon: str) -> str:
        path = self.root / "log" / f"{daemon}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop every daemon this cluster started (the slurmds first, munged last) and remove its files."""
        if "slurmctld" in self.processes:
            self._end_all_jobs()
        # Every slurmd at once (they do not depend on each other), then slurmctld, then munged.
        for kind in ("slurmd-", "slurmctld", "munged"):
            _terminate([p for name, p in self.processes.items() if name.startswith(kind)])
        self.processes.clear()
        _kill_strays(self.root)
        shutil.rmtree(self.root, ignore_errors=True)


def _terminate(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def check_installed() -> None:
    """Raise ClusterUnavailable unless the daemons and clients are installed and we may run them."""
    programs = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scancel", "sacct", "scontrol")
    missing = [p for p in programs if not _which(p)]
    if missing:
        raise ClusterUnavailable(f"missing {', '.join(missing)}; install with `apt-get install -y slurm-wlm munge`")
    if os.geteuid() != 0:
        raise ClusterUnavailable("the test cluster runs slurmd and munged, which needs root")
    try:
        pwd.getpwnam("munge")
    except KeyError:
        raise ClusterUnavailable("there is no `munge` user; reinstall the munge package") from None


def start_cluster(node_count: int = NODE_COUNT) -> SlurmCluster:
    """Start a fresh cluster of `node_count` nodes and wait until every node is idle. Raises ClusterUnavailable
    or RuntimeError. (`bench.slurm` starts a one-node cluster with it.)"""
    check_installed()
    # Not under pytest's tmp_path: that lives in a root-only folder the munge user cannot reach.
    root = Path(tempfile.mkdtemp(prefix="fedgate-slurm-"))
    root.chmod(0o755)
    nodes = tuple(f"fg{i}" for i in range(1, node_count + 1))
    cluster = SlurmCluster(root=root, conf=root / "etc" / "slurm.conf", nodes=nodes)
    try:
        _write_files(cluster)
        _start_munged(cluster)
        _start(cluster, "slurmctld", ["slurmctld", "-D", "-c", "-f", str(cluster.conf)])
        _wait_for(cluster, lambda: _answers(cluster, "scontrol", "ping"), "slurmctld to answer")
        for node in cluster.nodes:
            _start(cluster, f"slurmd-{node}", ["slurmd", "-D", "-f", str(cluster.conf), "-N", node])
        _wait_for(cluster, lambda: _nodes_idle(cluster), "every node to become idle")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _write_files(cluster: SlurmCluster) -> None:
    root = cluster.root
    for sub in ("etc", "state", "spool", "log", "run", "dev"):
        (root / sub).mkdir()
    for node in cluster.nodes:
        (root / "spool" / node).mkdir()
    munge = root / "munge"
    munge.mkdir()
    munge.chmod(0o711)  # munged wants its socket folder searchable by all, writable only by itself
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    user = pwd.getpwnam("munge")
    for path in (munge, key):
        os.chown(path, user.pw_uid, user.pw_gid)
    gres_lines = []
    for node in cluster.nodes:
        devices = root / "dev" / node
        devices.mkdir()
        first = 0
        for kind, count in GPUS.items():
            for index in range(first, first + count):
                (devices / f"gpu{index}").touch()
            gres_lines.append(f"NodeName={node} Name=gpu Type={kind} File={devices}/gpu[{first}-{first + count - 1}]")
            first += count
    (root / "etc" / "gres.conf").write_text("\n".join(gres_lines) + "\n")
    ctld_port = _free_port()
    host = socket.gethostname().split(".")[0]
    gres = ",".join(f"gpu:{kind}:{count}" for kind, count in GPUS.items())
    # One slurmd per node on this host: each its own port; spool, pid and log files per node name (%n).
    node_lines = "\n".join(
        f"NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 Port={_free_port()} CPUs=16 RealMemory=1000 "
        f"Gres={gres} State=UNKNOWN"
        for node in cluster.nodes
    )
    all_nodes = ",".join(cluster.nodes)
    cluster.conf.write_text(
        f"""\
ClusterName=fedgate-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge}/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd-%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerType=sched/builtin
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/log/jobcomp.txt
KillWait=1
SchedulerParameters=batch_sched_delay=0
EnforcePartLimits=ALL
MinJobAge=600
{node_lines}
PartitionName={PARTITION} Nodes={cluster.node} Default=YES MaxTime=INFINITE State=UP
PartitionName={SHORT_PARTITION} Nodes={cluster.node} MaxTime={SHORT_MAX_MINUTES} State=UP
PartitionName={MULTI_PARTITION} Nodes={all_nodes} MaxTime=INFINITE State=UP
"""
    )


def _start_munged(cluster: SlurmCluster) -> None:
    munge = cluster.root / "munge"
    _start(
        cluster,
        "munged",
        [
            "munged",
            "--foreground",
            f"--key-file={munge}/munge.key",
            f"--socket={munge}/munge.socket",
            f"--pid-file={munge}/munged.pid",
            f"--log-file={munge}/munged.log",
            f"--seed-file={munge}/munged.seed",
        ],
        user="munge",
    )
    socket_path = munge / "munge.socket"
    _wait_for(cluster, socket_path.exists, "munged's socket")


def _start(cluster: SlurmCluster, name: str, argv: list[str], user: str | None = None) -> None:
    log = (cluster.root / "log" / f"{name}.out").open("wb")
    try:
        cluster.processes[name] = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SLURM_CONF": str(cluster.conf)},
            user=user,
            start_new_session=True,  # a Ctrl-C of pytest must not reach the daemons before stop() does
        )
    finally:
        log.close()


def _wait_for(cluster: SlurmCluster, check: object, what: str) -> None:
    assert callable(check)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for name, process in cluster.processes.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {process.returncode} while waiting for {what}:\n{_logs(cluster)}"
                )
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {START_TIMEOUT_S:g}s waiting for {what}:\n{_logs(cluster)}")


def _answers(cluster: SlurmCluster, *argv: str) -> bool:
    done = subprocess.run(argv, env=cluster.env, capture_output=True, timeout=30, check=False)
    return done.returncode == 0


def _nodes_idle(cluster: SlurmCluster) -> bool:
    argv = ["sinfo", "--noheader", "--Node", "--format=%N|%T"]
    done = subprocess.run(argv, env=cluster.env, capture_output=True, text=True, check=False)
    states = dict(line.split("|", 1) for line in done.stdout.split() if "|" in line)
    return done.returncode == 0 and states == dict.fromkeys(cluster.nodes, "idle")


def _logs(cluster: SlurmCluster) -> str:
    parts = []
    for path in [*sorted((cluster.root / "log").glob("*")), cluster.root / "munge" / "munged.log"]:
        if path.exists() and path.is_file():
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-2000:]}")
    return "\n".join(parts)


def _kill_strays(root: Path) -> None:
    """Kill any process still running with this cluster's files open in its command line (a daemon that
    forked, a job's script). Only processes that name `root` are touched."""
    marker = str(root)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _which(program: str) -> bool:
    return shutil.which(program) is not None or shutil.which(program, path="/usr/sbin:/sbin") is not None
