"""What lets a local attempt outlive its agent: the wrapper every attempt runs under, the exit file it leaves,
and telling a process apart from a later one that reuses its pid.

Owns: the wrapper script (it runs the job's command as its child, forwards nothing, and when the command ends
writes the command's return code to `exit_code` in the attempt's folder atomically, so the outcome survives the
agent's death; and it fences the attempt: it kills its whole group once the agent has let the fence file's
deadline pass, so that an agent stopped or hung past the gateway's site lease leaves no attempt running beside
its replacement), the fence file, reading the exit file back, a process's identity (pid, start time in clock
ticks since boot from `/proc/<pid>/stat`, and the boot id: together they defeat pid reuse, also across a
reboot), and waiting for a process that is not the agent's child to end (a pidfd where the kernel has one,
else polling `/proc`). Linux only, as the local backend's process groups are. It does not start or stop
anything: `agents.backends.local` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from agents.backends.base import ExitStatus

EXIT_FILE = "exit_code"
FENCED_FILE = "fenced"
"""Left in the attempt's folder by a wrapper that killed its attempt because the fence's deadline passed."""
FENCE_FILE = "fence"
"""In the workdir: {"until": CLOCK_BOOTTIME seconds, "fence_s": s}. The agent moves `until` forward while it
runs; every wrapper whose environment names the file kills its group once the clock passes it."""
FENCE_ENV = "FEDGATE_FENCE_FILE"
RUN_AS_ENV = "FEDGATE_RUN_AS"
"""`uid:gid` the wrapper switches to before anything else (it is started as the agent's user: a process that
holds gRPC's threads cannot fork with a user switch, only vfork without one)."""
LEADER_FILE = "leader.json"
"""The wrapper's identity, written in the attempt's folder as soon as it started: it finds an attempt the agent
started but was killed before it could journal (`agents.backends.local.LocalBackend.sweep`)."""
POLL_S = 0.25
"""How often a process is looked at where the kernel offers no pidfd to wait on."""

# Run with `python -I -c WRAPPER <exit file> <executable> <args...>` in the attempt's own process group. With
# FEDGATE_RUN_AS=uid:gid in its environment it first becomes that user for good (and exits 126 if it cannot). The
# wrapper ignores the polite signals sent to the whole group (a Python handler, not SIG_IGN, so that the command
# gets the default dispositions back at exec), so that it outlives the command and can record how it ended; a
# SIGKILL of the group ends it too, and then no exit file says so. It exits with the command's code (128+N for
# signal N), so an agent that is still its parent reads the same outcome from either.
WRAPPER = r"""
import json, os, signal, subprocess, sys, time

_run_as = os.environ.pop("FEDGATE_RUN_AS", "")
if _run_as:  # first of all, and for good: the job user's uid and gid, no supplementary groups
    _uid, _gid = (int(_part) for _part in _run_as.split(":"))
    os.setgroups([])
    os.setgid(_gid)
    os.setuid(_uid)
    if os.getuid() != _uid or os.geteuid() != _uid:
        sys.exit(126)

def _polite(signum, frame):
    pass

for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_s, _polite)
exit_file = sys.argv[1]
fence = os.environ.pop("FEDGATE_FENCE_FILE", "")

def _fenced():
    try:
        with open(fence) as f:
            until = float(json.load(f)["until"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return time.clock_gettime(time.CLOCK_BOOTTIME) > until

try:
    child = subprocess.Popen(sys.argv[2:])
    while True:
        try:
            code = child.wait(timeout=0.1 if fence else None)
            break
        except subprocess.TimeoutExpired:
            if _fenced():
                open(os.path.join(os.path.dirname(exit_file) or ".", "fenced"), "w").close()
                os.killpg(0, signal.SIGKILL)
except OSError as exc:
    sys.stderr.write(f"fedgate: cannot start {sys.argv[2]!r}: {exc}\n")
    code = 127
partial = exit_file + ".partial"
with open(partial, "w") as out:
    json.dump({"returncode": code}, out)
    out.flush()
    os.fsync(out.fileno())
os.replace(partial, exit_file)
folder = os.open(os.path.dirname(exit_file) or ".", os.O_RDONLY)
try:
    os.fsync(folder)
finally:
    os.close(folder)
sys.exit(code if code >= 0 else 128 - code)
"""


@dataclass(frozen=True)
class ProcessIdentity:
    """One process, told apart from any later process with the same pid."""

    pid: int
    start_ticks: int
    """Field 22 of `/proc/<pid>/stat`: when it started, in clock ticks since boot (0 = not known)."""
    boot_id: str
    """The kernel's boot id when it was read: a start time means nothing after a reboot."""

    def to_record(self) -> dict[str, object]:
        return {"pid": self.pid, "start_ticks": self.start_ticks, "boot_id": self.boot_id}

    @classmethod
    def from_record(cls, record: object) -> ProcessIdentity | None:
        """The identity in a journaled record, or None when the record has none (an older journal)."""
        if not isinstance(record, dict):
            return None
        try:
            return cls(int(record["pid"]), int(record["start_ticks"]), str(record["boot_id"]))
        except (KeyError, TypeError, ValueError):
            return None


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start ticks) of `pid`, or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name in parentheses may itself hold spaces and parentheses: fields follow the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def identify(pid: int) -> ProcessIdentity:
    """The identity of the process `pid` as it is now (start 0 if it is already gone)."""
    found = _stat(pid)
    return ProcessIdentity(pid, found[1] if found else 0, boot_id())


def running(identity: ProcessIdentity) -> bool:
    """True while that very process exists and has not ended (a zombie has ended)."""
    if not identity.start_ticks or identity.boot_id != boot_id():
        return False
    found = _stat(identity.pid)
    return found is not None and found[1] == identity.start_ticks and found[0] not in ("Z", "X")


def group_may_remain(leader: ProcessIdentity) -> bool:
    """True when `leader` has ended but processes of its group may live on: its pid is free or still its own
    zombie. A pid that is a live group's id is never reused by the kernel, so a pid taken by another process
    (or a reboot) means that nothing of the group is left, and it must not be signalled."""
    if leader.pid <= 1 or not leader.start_ticks or leader.boot_id != boot_id():
        return False
    found = _stat(leader.pid)
    return found is None or (found[1] == leader.start_ticks and found[0] in ("Z", "X"))


def group_has_members(pgid: int) -> bool:
    """True when some process is still in process group `pgid` (signal 0 only checks)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def until_ended(identity: ProcessIdentity) -> None:
    """Return once the process has ended. It need not be our child: nothing here reaps it."""
    if not running(identity):
        return
    pidfd_open = getattr(os, "pidfd_open", None)
    fd = -1
    if pidfd_open is not None:
        with contextlib.suppress(OSError):
            fd = pidfd_open(identity.pid)
    if fd < 0:
        # Without a pidfd, a process that is not our child gives no event to wait on: look at it.
        while running(identity):  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)
        return
    try:
        if not running(identity):  # the pid may have been reused before the pidfd was opened
            return
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not ended.done():
                ended.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await ended
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)


MAX_RECORD_BYTES = 4096
"""Most bytes read from a small record file (exit_code, leader.json) in an attempt's folder."""


def open_in_attempt(path: Path, flags: int, mode: int = 0o644) -> int:
    """Open a file of an attempt's folder, which may belong to the job's user: never through a link the job put
    there (the agent may run as root), never blocking on a FIFO. OSError as os.open's."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)


def _read_record(path: Path) -> str:
    fd = open_in_attempt(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as record:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise ValueError(f"{path.name} is not a plain file")
        return record.read(MAX_RECORD_BYTES).decode("utf-8", errors="replace")


def write_leader(directory: Path, identity: ProcessIdentity) -> None:
    partial = directory / (LEADER_FILE + ".partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()  # whatever the job may have put there; the new file is made, not followed
    fd = open_in_attempt(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(identity.to_record()))
    os.replace(partial, directory / LEADER_FILE)


def read_leader(directory: Path) -> ProcessIdentity | None:
    try:
        return ProcessIdentity.from_record(json.loads(_read_record(directory / LEADER_FILE)))
    except (OSError, ValueError):
        return None


def read_exit(directory: Path) -> ExitStatus | None:
    """How the command ended, from the exit file its wrapper wrote; None when there is none (yet)."""
    try:
        data = json.loads(_read_record(directory / EXIT_FILE))
        return ExitStatus.from_returncode(int(data["returncode"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def owner_of(pid: int) -> int | None:
    """The uid a process runs as (None when it is gone)."""
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def boottime() -> float:
    """Seconds since boot, counting time suspended and time the agent was stopped: the fence's clock."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def write_fence(workdir: Path, fence_s: float) -> None:
    """Move the fence's deadline to `fence_s` from now (atomically: a wrapper never reads half a file)."""
    partial = workdir / (FENCE_FILE + ".partial")
    partial.write_text(json.dumps({"until": boottime() + fence_s, "fence_s": fence_s}))
    os.replace(partial, workdir / FENCE_FILE)


def read_fence_s(workdir: Path) -> float:
    """The fence period a previous run of the agent kept (0 when none), so a restarted agent renews at once."""
    try:
        return float(json.loads((workdir / FENCE_FILE).read_text())["fence_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def was_fenced(directory: Path) -> bool:
    return (directory / FENCED_FILE).exists()


def clear_exit(directory: Path) -> None:
    """Remove an exit file left by an earlier start in the same folder, so it cannot be taken for this one's."""
    for name in (EXIT_FILE, EXIT_FILE + ".partial", FENCED_FILE):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
