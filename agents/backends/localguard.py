"""What keeps a `local` job away from the agent that runs it: the local backend's options, the job's scrubbed
environment, the unprivileged user jobs run as, the python its wrapper runs with, and the check that the agent's
secrets are out of that user's reach.

Owns: `LocalOptions` (`pass_env`, `run_as`) and reading them from the `backend:` section; `RunAs` (the job user's
uid and gid, `nobody` by default when the agent runs as root; refused while the agent is not root); the job's
environment (only PATH, LANG, LC_*, TZ and the operator's `pass_env` names from the agent's own environment, a
system PATH instead of the agent's when jobs run as another user, HOME the attempt's folder, then the job's own
variables; never the agent's other variables); finding a system python3 the job user can execute for the wrapper
(the agent's own interpreter may sit where that user cannot reach); whether a path can be reached, read or
written by a uid and gid (mode bits of the path and every folder above it); and `guard_secrets`, which refuses to
start an agent whose key, credentials folder or state folder the job user could read or write, and warns loudly
where a job could read them anyway (the agent is not root: jobs run as its own user).
It does not start processes (`agents.backends.local` does) and is no sandbox: see the README's "What `local`
does not isolate".
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agents.errors import ConfigError
from fedgate.common.sections import Section

log = logging.getLogger(__name__)

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""A job's PATH when it runs as another user than the agent (the agent's PATH may name its own folders)."""
DEFAULT_RUN_AS = "nobody"
"""The job user when the agent runs as root and the config names none."""
PASSED_NAMES = frozenset({"PATH", "LANG", "TZ"})
"""Variables of the agent's own environment every job gets (with LC_*); anything else only through pass_env."""
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class LocalOptions:
    """The `local` backend's own keys of the `backend:` section."""

    pass_env: tuple[str, ...] = ()
    """Names of the agent's environment variables passed on to every job (beside PATH, LANG, LC_*, TZ)."""
    run_as: str | None = None
    """The user jobs run as. None: `nobody` when the agent runs as root, else the agent's own user."""


def read_local_options(section: Section, base: Path) -> LocalOptions:
    names = section.strings("pass_env")
    for i, name in enumerate(names):
        if not _ENV_NAME.fullmatch(name) or name.startswith("FEDGATE_"):
            section.fail_item("pass_env", i, f"pass_env[{i}] {name!r} must be a variable name not starting FEDGATE_")
    run_as = section.text("run_as", "") or None
    if run_as is not None:
        try:
            pwd.getpwnam(run_as)
        except KeyError:
            section.fail(
                f"run_as names user {run_as!r}, which this machine does not have; create it or pick one", "run_as"
            )
    return LocalOptions(pass_env=names, run_as=run_as)


@dataclass(frozen=True)
class RunAs:
    """The unprivileged user a job and its wrapper run as."""

    name: str
    uid: int
    gid: int


def job_user(options: LocalOptions, euid: int | None = None) -> RunAs | None:
    """Whom jobs run as: `run_as`, or `nobody` for an agent running as root; None (the agent's own user) for an
    agent that is not root and names none. ConfigError for `run_as` set while the agent cannot switch users."""
    euid = os.geteuid() if euid is None else euid
    if options.run_as is not None and euid != 0:
        raise ConfigError(
            f"backend.run_as is {options.run_as!r}, but the agent does not run as root and so cannot start jobs "
            "as another user; remove run_as (jobs then run as the agent's own user) or run the agent as root"
        )
    if euid != 0:
        return None
    name = options.run_as or DEFAULT_RUN_AS
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(
            f"the local backend runs jobs as {name!r} when the agent is root, and this machine has no such user; "
            "set backend.run_as to an unprivileged user"
        ) from None
    if entry.pw_uid == 0:
        raise ConfigError(f"backend.run_as {name!r} is root; name an unprivileged user")
    return RunAs(name, entry.pw_uid, entry.pw_gid)


def wrapper_python(user: RunAs | None, agent_python: str) -> str:
    """The python the wrapper runs with: the agent's own when jobs run as the agent, else the system python3
    found on SAFE_PATH that `user` can execute (ConfigError saying what to install when there is none)."""
    if user is None:
        return agent_python
    found = shutil.which("python3", path=SAFE_PATH)
    if found is None or not can_execute(Path(found), user):
        raise ConfigError(
            f"the local backend runs each job's wrapper as {user.name!r} with the system's python3, and found none "
            f"that {user.name!r} can execute on {SAFE_PATH}; install python3 (e.g. apt-get install python3-minimal)"
        )
    return found


def job_environment(
    agent_env: Mapping[str, str], options: LocalOptions, user: RunAs | None, home: Path
) -> dict[str, str]:
    """The base of a job's environment: the allowlisted variables of the agent's, a system PATH when it runs as
    another user, HOME its attempt folder. The caller adds the job's own variables and then FEDGATE_*."""
    env = {
        name: value
        for name, value in agent_env.items()
        if name in PASSED_NAMES or name.startswith("LC_") or name in options.pass_env
    }
    if user is not None or "PATH" not in env:
        env["PATH"] = SAFE_PATH
    env["HOME"] = str(home)
    return {name: value for name, value in env.items() if not name.startswith("FEDGATE_")}


def _allowed(mode: int, owner: int, group: int, user: RunAs, bits: tuple[int, int, int]) -> bool:
    """Whether `user` has the access given by (owner bit, group bit, other bit) on a file of this mode."""
    if owner == user.uid:
        return bool(mode & bits[0])
    if group == user.gid:
        return bool(mode & bits[1])
    return bool(mode & bits[2])


def can_reach(path: Path, user: RunAs) -> bool:
    """Whether `user` can traverse every folder above `path` (the folders that exist)."""
    for folder in reversed(path.absolute().parents):
        try:
            info = folder.stat()
        except OSError:
            return True
        if not _allowed(info.st_mode, info.st_uid, info.st_gid, user, (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)):
            return False
    return True


def _access(path: Path, user: RunAs, bits: tuple[int, int, int]) -> bool:
    try:
        info = path.stat()
    except OSError:
        return False
    return can_reach(path, user) and _allowed(info.st_mode, info.st_uid, info.st_gid, user, bits)


def can_read(path: Path, user: RunAs) -> bool:
    return _access(path, user, (stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH))


def can_write(path: Path, user: RunAs) -> bool:
    return _access(path, user, (stat.S_IWUSR, stat.S_IWGRP, stat.S_IWOTH))


def can_execute(path: Path, user: RunAs) -> bool:
    real = Path(os.path.realpath(path))
    return real.is_file() and _access(real, user, (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH))


def guard_secrets(user: RunAs | None, key: Path, state_dir: Path | None) -> None:
    """Refuse (ConfigError) when the job user could read the agent's key, write its credentials folder, or read
    or write its state folder (the journal holds every job's environment); warn loudly when jobs run as the
    agent's own user (they can read all of it) or when the key is readable by group or others on this machine."""
    if user is None:
        log.warning(
            "the local backend runs jobs as the agent's own user (the agent is not root): every job can read the "
            "agent's key %s and its state; run the agent as root (jobs then run as an unprivileged user, "
            "backend.run_as) or use another backend for jobs you do not trust",
            key,
        )
        return
    exposed = [
        (key, can_read(key, user)),
        (key.parent, can_write(key.parent, user)),
        *([(state_dir, can_read(state_dir, user) or can_write(state_dir, user))] if state_dir is not None else []),
    ]
    for path, open_to_jobs in exposed:
        if open_to_jobs:
            raise ConfigError(
                f"{path} is open to {user.name!r}, the user the local backend runs jobs as, so any job could take "
                f"the site's key or rewrite the agent's state; chmod go-rwx {path}"
            )
    try:
        if key.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("the site's key %s is readable by its group or by others on this machine; chmod 600 it", key)
    except OSError:
        pass
