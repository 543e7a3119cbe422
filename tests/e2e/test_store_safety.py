"""One gateway per SQLite store and per port; a damaged, read-only or full store met as a failing disk makes it.

Every test runs `fedgate gateway run` as operators do, in real processes. A read-only or full disk is made in a
private mount namespace (`unshare --user --map-root-user --mount`): a read-only bind mount or a tiny tmpfs under
the store, which bites root too (chmod does not) and leaves the machine's mounts alone.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.app.config import REPO_POLICIES
from gateway.errors import ClientError
from gateway.identity.ca import init_ca
from gateway.identity.principal import Principal
from gateway.jobs.model import Job, JobEvent, JobSpec, JobState, Resources, StackRun
from gateway.store import open_store
from gateway.transport.client import FederationClient
from gateway.trust.credentials import Credentials
from tests.conftest import require_service
from tests.e2e.test_gateway_process import gateway_config
from tests.waiting import eventually

GATEWAY = [sys.executable, "-m", "fedgate.cli", "gateway", "run"]
JOBS = 300


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A CA, the gateway's credentials, an admin's and a user's, and the repository's policy."""
    ca = init_ca(tmp_path / "ca", "demo")
    ca.issue_server(tmp_path / "gw")
    ca.issue(Principal.admin("demo", "root"), tmp_path / "admin")
    ca.issue(Principal.user("demo", "deepsea-ai", "alice"), tmp_path / "alice")
    shutil.copy(REPO_POLICIES / "federation.yaml", tmp_path / "federation.yaml")
    return tmp_path


def config_named(workdir: Path, name: str, **extra: object) -> Path:
    return gateway_config(workdir, **extra).rename(workdir / name)


class Gateway:
    """A `fedgate gateway run` process; `prefix` runs it inside another command (a mount namespace)."""

    def __init__(self, config: Path, *, prefix: Sequence[str] = ()) -> None:
        self.ready = config.with_suffix(".ready")
        self.process = subprocess.Popen(
            [*prefix, *GATEWAY, "--config", str(config), "--ready-file", str(self.ready)],
            cwd=config.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_serving(self) -> str:
        eventually(lambda: self.ready.exists() or self.process.poll() is not None, timeout=30, what="the gateway")
        assert self.ready.exists(), self.stop()
        return self.ready.read_text().split()[0]

    def stop(self) -> str:
        """SIGTERM, wait, and return what the process wrote to stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, stderr = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
        return stderr


def run_to_exit(config: Path, *, prefix: Sequence[str] = ()) -> tuple[int, str]:
    """Run a gateway that is expected to refuse to start; returns (exit code, stderr)."""
    done = subprocess.run(
        [*prefix, *GATEWAY, "--config", str(config)],
        cwd=config.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def spec() -> JobSpec:
    return JobSpec("deepsea-ai", "llama-sft", Resources("ascend-910b", None, 2), (StackRun("cann", "", ("true",)),))


def populated_store(path: Path, jobs: int = JOBS) -> None:
    """A store as a gateway leaves it: `jobs` queued jobs, closed cleanly (the WAL folded into the file)."""
    store = open_store(f"sqlite:///{path}")
    now = datetime.now(UTC)
    batch = [
        (Job(f"job-{i:05d}", spec(), JobState.QUEUED, now, now), JobEvent(f"job-{i:05d}", JobState.QUEUED, now))
        for i in range(jobs)
    ]
    store.create_jobs(batch)
    store.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def namespace_prefix(*setup: str) -> list[str]:
    """Run the command after `setup` (shell lines) in a private user and mount namespace."""
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        require_service("a private mount namespace (unshare --user --mount)", probe.stderr.strip())
    script = " && ".join((*setup, 'exec "$@"'))
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"]


# ---- one gateway per store, one process per port ----------------------------------------------------------


def test_a_second_gateway_on_the_same_store_refuses_to_start_and_names_the_holder(workdir: Path) -> None:
    config = config_named(workdir, "one.yaml")
    first = Gateway(config)
    try:
        address = first.wait_serving()
        code, stderr = run_to_exit(config)  # the same config: the same file, another free port
        assert code == 2, stderr
        assert "Traceback" not in stderr, stderr
        assert str(workdir / "gw.db") in stderr and "in use by another gateway" in stderr, stderr
        assert f"pid {first.process.pid}" in stderr, stderr
        assert "PostgreSQL" in stderr, stderr  # what to do for several gateways
        with FederationClient(address, Credentials.from_dir(workdir / "admin"), timeout=10) as admin:
            assert admin.policy_status().version  # the first one serves on, undisturbed
        # An offline reader beside the running gateway still works: it takes no lock and writes nothing.
        check = subprocess.run(
            [
                sys.executable,
                *("-m", "fedgate.cli", "admin", "audit", "verify"),
                *("--store", f"sqlite:///{workdir / 'gw.db'}", "--authority", str(workdir / "ca"), "-o", "json"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert check.returncode == 0, check.stderr
        assert '"intact": true' in check.stdout, check.stdout
    finally:
        assert first.process.poll() is None, first.stop()
        first.stop()
    assert first.process.returncode == 0
    # Once the holder has stopped, the lock is free: a gateway starts on the file again.
    again = Gateway(config)
    try:
        again.wait_serving()
    finally:
        again.stop()


def test_a_gateway_killed_with_sigkill_leaves_no_stale_lock(workdir: Path) -> None:
    config = config_named(workdir, "one.yaml")
    first = Gateway(config)
    first.wait_serving()
    first.process.kill()
    first.process.communicate(timeout=30)
    first.ready.unlink()
    second = Gateway(config)
    try:
        second.wait_serving()
    finally:
        second.stop()


@pytest.mark.parametrize("which", ["listen", "public_listen"])
def test_a_second_gateway_on_the_same_port_cannot_bind(workdir: Path, which: str) -> None:
    """gRPC sets SO_REUSEPORT by default: a second process on the same port would bind and the kernel would
    split the agents between the two. Two stores, so that only the port is shared."""
    port = free_port()
    fixed = {which: f"127.0.0.1:{port}"}
    # Each store has its own audit checkpoint: one checkpoint anchors one store's log.
    first_config = config_named(workdir, "a.yaml", store="sqlite:///a.db", audit_checkpoint="a.json", **fixed)
    second_config = config_named(workdir, "b.yaml", store="sqlite:///b.db", audit_checkpoint="b.json", **fixed)
    first = Gateway(first_config)
    try:
        address = first.wait_serving()
        code, stderr = run_to_exit(second_config)
        assert code != 0, stderr
        assert "Traceback" not in stderr, stderr
        assert f"127.0.0.1:{port}" in stderr and "address is in use (is another gateway running?)" in stderr, stderr
        with FederationClient(address, Credentials.from_dir(workdir / "admin"), timeout=10) as admin:
            assert admin.policy_status().version
        # The refused gateway let its store go: it can start on it once it has a port of its own.
        retry = Gateway(config_named(workdir, "c.yaml", store="sqlite:///b.db", audit_checkpoint="b.json"))
        try:
            retry.wait_serving()
        finally:
            retry.stop()
    finally:
        assert first.process.poll() is None, first.stop()
        first.stop()


# ---- damaged stores ---------------------------------------------------------------------------------------


def _truncate_to_zero(db: Path) -> None:
    os.truncate(db, 0)


def _overwrite_header(db: Path) -> None:
    with db.open("r+b") as file:  # a misdirected write over the first sector
        file.write(b"\x00" * 512)


def _garble_pages(db: Path) -> None:
    """Bytes flipped across a few b-tree pages (a bad sector run), the header left intact."""
    page = 4096  # SQLite's default, which the store keeps
    with db.open("r+b") as file:
        for number in (2, 3, 4, 5):
            file.seek((number - 1) * page)
            data = bytearray(file.read(64))
            file.seek((number - 1) * page)
            file.write(bytes(b ^ 0xA5 for b in data))


def _lose_the_tail(db: Path) -> None:
    os.truncate(db, db.stat().st_size // 2)


def _sql(db: Path, statement: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute(statement)
    finally:
        conn.close()


def _from_a_newer_fedgate(db: Path) -> None:
    _sql(db, "PRAGMA user_version = 99")


def _another_programs_database(db: Path) -> None:
    db.unlink()
    _sql(db, "CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")


DAMAGE = {
    "zero-length": (_truncate_to_zero, "is empty (0 bytes)"),
    "header overwritten": (_overwrite_header, "is not a SQLite database"),
    "pages garbled": (_garble_pages, "is corrupted"),
    "tail lost": (_lose_the_tail, "is corrupted"),
    "newer schema": (_from_a_newer_fedgate, "written by a newer fedgate"),
    "foreign database": (_another_programs_database, "not a fedgate store"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_store_is_refused_with_exit_2_and_never_started_empty(workdir: Path, kind: str) -> None:
    db = workdir / "gw.db"
    populated_store(db)
    damage, words = DAMAGE[kind]
    damage(db)
    before = digest(db)
    code, stderr = run_to_exit(config_named(workdir, "gw.yaml"))
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    assert f"the store {db}" in stderr and words in stderr, stderr
    assert "backup" in stderr or "newer fedgate" in stderr, stderr  # what to do
    assert digest(db) == before  # refused means untouched: no schema written into it, no empty start


def test_a_missing_store_is_created_marked_and_is_not_mistaken_for_damage(workdir: Path) -> None:
    db = workdir / "gw.db"
    assert not db.exists()
    gateway = Gateway(config_named(workdir, "gw.yaml"))
    try:
        gateway.wait_serving()
    finally:
        gateway.stop()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == 0x66656467
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1
    finally:
        conn.close()
    again = Gateway(config_named(workdir, "gw.yaml"))  # and the next start takes it as its own
    try:
        again.wait_serving()
    finally:
        again.stop()


@pytest.mark.parametrize("what", ["directory", "file"])
def test_a_read_only_store_is_refused_naming_the_file_and_the_fix(workdir: Path, what: str) -> None:
    """A read-only mount (a disk remounted read-only after errors) under the store: bites root, unlike chmod."""
    store_dir = workdir / "disk"
    store_dir.mkdir()
    db = store_dir / "gw.db"
    populated_store(db)
    target = store_dir if what == "directory" else db
    prefix = namespace_prefix(f"mount --bind {target} {target}", f"mount -o remount,bind,ro {target}")
    code, stderr = run_to_exit(config_named(workdir, "gw.yaml", store="sqlite:///disk/gw.db"), prefix=prefix)
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    assert str(db) in stderr and ("cannot be written" in stderr or "Read-only file system" in stderr), stderr
    assert "permissions" in stderr and "mount" in stderr, stderr


# ---- a disk that fills up while the gateway runs ----------------------------------------------------------


def _fill(directory: Path) -> Path:
    ballast = directory / "ballast"
    with ballast.open("wb", buffering=0) as file:  # unbuffered: nothing left to write when it closes
        try:
            while True:
                file.write(b"\x00" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return ballast


def _submit(client: FederationClient, tries: int) -> Iterator[tuple[str, ClientError | None]]:
    for i in range(tries):
        try:
            yield client.create_job(spec(), request_id=f"fill-{i}").job_id, None
        except ClientError as exc:
            yield "", exc


def test_a_full_disk_refuses_new_work_with_resource_exhausted_keeps_reads_and_recovers(workdir: Path) -> None:
    disk = workdir / "disk"
    disk.mkdir()
    prefix = namespace_prefix(f"mount -t tmpfs -o size=4m tmpfs {disk}")
    gateway = Gateway(config_named(workdir, "gw.yaml", store="sqlite:///disk/gw.db"), prefix=prefix)
    try:
        address = gateway.wait_serving()
        inside = Path(f"/proc/{gateway.process.pid}/root") / str(disk).lstrip("/")  # the tmpfs, seen from here
        with FederationClient(address, Credentials.from_dir(workdir / "alice"), timeout=15) as alice:
            acknowledged = [alice.create_job(spec(), request_id=f"before-{i}").job_id for i in range(5)]
            ballast = _fill(inside)
            refusal: ClientError | None = None
            for job_id, error in _submit(alice, 200):  # the WAL may still hold a few commits' room
                if error is not None:
                    refusal = error
                    break
                acknowledged.append(job_id)
            assert refusal is not None, "the full disk never refused a job"
            assert (refusal.code, refusal.reason) == ("RESOURCE_EXHAUSTED", "STORE_FULL"), refusal
            assert "INTERNAL" not in refusal.message and "sqlite" not in refusal.message.lower()
            # Reads go on while the disk is full.
            assert alice.get_job(acknowledged[0]).state == JobState.QUEUED
            ballast.unlink()  # an operator frees space
            acknowledged.append(alice.create_job(spec(), request_id="after").job_id)
            listed = [job.job_id for job in alice.list_jobs(limit=1000)]
            assert sorted(listed) == sorted(set(acknowledged)) and len(listed) == len(acknowledged)
        assert gateway.process.poll() is None
    finally:
        stderr = gateway.stop()
    assert "database or disk is full" in stderr, stderr  # the cause is in the log
