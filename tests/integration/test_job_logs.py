"""A job's output through real parts: a real agent runs a real process on the local backend, the gateway relays
its output over the agent's stream, and the vendor reads it with the client library and with `fedgate job logs`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from agents.core.commands import LogCommand, LogCredit, LogRequest
from agents.transport import session
from agents.transport.convert import log_command_from_proto
from fedgate.v1 import site_pb2
from gateway.cli import job as job_cli
from gateway.errors import ClientError
from gateway.jobs.model import Job, JobSpec, JobState, Resources, StackRun
from gateway.sites.logs import WINDOW_BYTES, LogPiece
from gateway.transport.client import FederationClient
from tests.integration.harness import AgentHandle, GatewayHandle, start_test_agent, wait_for_capacity
from tests.jobs import JOB_PYTHON
from tests.waiting import eventually

SITE = "centre-c"
LINES = b"step 1 loss 3.20\nstep 2 loss 2.75\nstep 3 loss 2.41\n"
PRINT_LINES = "import sys; sys.stdout.write(" + repr(LINES.decode()) + ")"
# Prints a line, then waits (bounded) for a gate file the test creates, then prints another and exits.
WAIT_FOR_GATE = (
    "import pathlib, sys, time\n"
    "print('started', flush=True)\n"
    "gate = pathlib.Path(sys.argv[1])\n"
    "for _ in range(600):\n"
    "    if gate.exists(): break\n"
    "    time.sleep(0.05)\n"
    "print('finished', flush=True)\n"
)


def spec(*command: str, accelerator: str = "nvidia-h20") -> JobSpec:
    return JobSpec("panda-lm", "eval", Resources(accelerator, None, 1), (StackRun("cuda", "", command),))


@pytest.fixture
def h20_site(gateway: GatewayHandle, tmp_path: Path) -> Iterator[AgentHandle]:
    pools = [{"class": "nvidia-h20", "cards": 8, "offered": 8, "cards_per_node": 8}]
    agent = start_test_agent(gateway, SITE, pools, tmp_path / "c")
    wait_for_capacity(gateway, SITE)
    yield agent
    agent.stop()


@pytest.fixture
def bob(gateway: GatewayHandle) -> Iterator[FederationClient]:
    with gateway.client(gateway.pki.user("panda-lm", "bob")) as client:
        yield client


def run_to_end(client: FederationClient, job_spec: JobSpec) -> Job:
    job = client.create_job(job_spec)
    eventually(lambda: client.get_job(job.job_id).state.terminal, what=f"job {job.job_id} to end")
    return client.get_job(job.job_id)


def wait_until_running(client: FederationClient, job: Job) -> None:
    eventually(lambda: client.get_job(job.job_id).state == JobState.RUNNING, what=f"job {job.job_id} to run")


def read_until(pieces: Iterator[LogPiece], wanted: bytes) -> bytes:
    """Read pieces until the output so far ends with `wanted`: chunks may split the output anywhere."""
    data = b""
    for piece in pieces:
        data += piece.data
        if data.endswith(wanted):
            return data
    raise AssertionError(f"the log ended after {data!r}, before {wanted!r}")


def open_gate_while_followed(gateway: GatewayHandle, gate: Path) -> threading.Thread:
    """Create `gate` once a reader follows the job's log: what comes after it can only arrive by following."""

    def watch() -> None:
        eventually(lambda: gateway.running.core.logs.open_streams > 0, what="a reader to follow the log")
        gate.touch()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_logs_of_a_finished_job_are_its_output_from_its_site_and_epoch(
    gateway: GatewayHandle, h20_site: AgentHandle, bob: FederationClient
) -> None:
    job = run_to_end(bob, spec(JOB_PYTHON, "-c", PRINT_LINES))
    assert job.state == JobState.SUCCEEDED, job.reasons  # why not, should it ever fail (it did once under load)
    pieces = list(bob.stream_job_logs(job.job_id, timeout=20))
    assert b"".join(p.data for p in pieces) == LINES
    assert {(p.site, p.epoch) for p in pieces} == {(SITE, job.epoch)}
    tail = b"".join(p.data for p in bob.stream_job_logs(job.job_id, tail_bytes=17, timeout=20))
    assert tail == b"step 3 loss 2.41\n"
    assert gateway.running.core.logs.open_streams == 0


def test_follow_streams_the_output_as_it_is_written_until_the_job_ends(
    gateway: GatewayHandle, h20_site: AgentHandle, bob: FederationClient, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    job = bob.create_job(spec(JOB_PYTHON, "-c", WAIT_FOR_GATE, str(gate)))
    wait_until_running(bob, job)
    pieces = bob.stream_job_logs(job.job_id, follow=True, timeout=30)
    first = read_until(pieces, b"started\n")  # read while the job still runs: it waits for the gate
    assert bob.get_job(job.job_id).state == JobState.RUNNING
    gate.touch()
    rest = b"".join(p.data for p in pieces)  # ends by itself once the attempt has ended
    assert first + rest == b"started\nfinished\n"
    eventually(lambda: bob.get_job(job.job_id).state == JobState.SUCCEEDED, what="the job to succeed")


def test_a_reader_leaving_early_ends_the_stream_at_the_gateway_and_the_site(
    gateway: GatewayHandle,
    h20_site: AgentHandle,
    bob: FederationClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="agents.core.logs")
    gate = tmp_path / "gate"
    job = bob.create_job(spec(JOB_PYTHON, "-c", WAIT_FOR_GATE, str(gate)))
    wait_until_running(bob, job)
    pieces = bob.stream_job_logs(job.job_id, follow=True, timeout=30)
    assert read_until(pieces, b"started\n") == b"started\n"
    relay = gateway.running.core.logs
    assert relay.open_streams == 1
    pieces.close()  # the reader goes away while the job still runs
    eventually(lambda: relay.open_streams == 0, what="the gateway to drop the stream")
    eventually(lambda: "cancelled by the gateway" in caplog.text, what="the site to stop reading")
    gate.touch()
    eventually(lambda: bob.get_job(job.job_id).state == JobState.SUCCEEDED, what="the job to succeed")
    again = b"".join(p.data for p in bob.stream_job_logs(job.job_id, follow=True, timeout=20))
    assert again == b"started\nfinished\n"  # the site still serves new readers


def test_logs_are_for_those_who_may_see_the_job_and_refused_to_others_as_not_found(
    gateway: GatewayHandle, h20_site: AgentHandle, bob: FederationClient
) -> None:
    job = run_to_end(bob, spec(JOB_PYTHON, "-c", PRINT_LINES))
    for reader in (gateway.pki.user("panda-lm", "carol"), gateway.pki.admin()):  # a viewer of eval, an admin
        with gateway.client(reader) as client:
            assert b"".join(p.data for p in client.stream_job_logs(job.job_id, timeout=20)) == LINES
    with gateway.client(gateway.pki.user("deepsea-ai", "alice")) as alice:
        with pytest.raises(ClientError) as refused:
            list(alice.stream_job_logs(job.job_id, timeout=20))
        with pytest.raises(ClientError) as missing:
            alice.get_job("job-does-not-exist")
    assert (refused.value.code, refused.value.reason) == ("NOT_FOUND", "JOB_NOT_FOUND")
    assert refused.value.message == missing.value.message.replace("job-does-not-exist", job.job_id)


def test_a_job_that_never_started_says_when_logs_appear(
    gateway: GatewayHandle, h20_site: AgentHandle, bob: FederationClient
) -> None:
    job = bob.create_job(spec("true", accelerator="nvidia-h100"))  # no site offers it: stays queued
    with pytest.raises(ClientError) as refused:
        list(bob.stream_job_logs(job.job_id, timeout=20))
    assert (refused.value.code, refused.value.reason) == ("FAILED_PRECONDITION", "JOB_NOT_STARTED")
    assert "once a site starts it" in refused.value.message
    bob.cancel_job(job.job_id)


def test_an_offline_site_is_named(gateway: GatewayHandle, h20_site: AgentHandle, bob: FederationClient) -> None:
    job = run_to_end(bob, spec(JOB_PYTHON, "-c", PRINT_LINES))
    h20_site.stop()
    eventually(lambda: not gateway.running.core.registry.get(SITE).connected, what=f"{SITE} to disconnect")
    with pytest.raises(ClientError) as refused:
        list(bob.stream_job_logs(job.job_id, timeout=20))
    assert (refused.value.code, refused.value.reason) == ("UNAVAILABLE", "SITE_OFFLINE")
    assert f"site {SITE}" in refused.value.message


def flags(gateway: GatewayHandle, creds: Path) -> list[str]:
    return ["--gateway", gateway.address, "--creds", str(creds)]


def test_cli_prints_the_output_raw_or_as_json_with_exit_codes_scripts_can_trust(
    gateway: GatewayHandle, h20_site: AgentHandle, bob: FederationClient, capsys: pytest.CaptureFixture[str]
) -> None:
    as_bob = flags(gateway, gateway.pki.user("panda-lm", "bob"))
    job = run_to_end(bob, spec(JOB_PYTHON, "-c", PRINT_LINES))
    assert job_cli.main(["logs", job.job_id, *as_bob]) == 0
    assert capsys.readouterr().out == LINES.decode()
    assert job_cli.main(["logs", job.job_id, "--tail", "17", *as_bob]) == 0
    assert capsys.readouterr().out == "step 3 loss 2.41\n"
    assert job_cli.main(["logs", job.job_id, "-o", "json", *as_bob]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "".join(r["text"] for r in records) == LINES.decode()
    assert {(r["site"], r["epoch"]) for r in records} == {(SITE, job.epoch)}

    assert job_cli.main(["logs", job.job_id, *flags(gateway, gateway.pki.user("deepsea-ai", "alice"))]) == 4
    assert "not found" in capsys.readouterr().err
    queued = bob.create_job(spec("true", accelerator="nvidia-h100"))
    assert job_cli.main(["logs", queued.job_id, *as_bob]) == 1
    assert "has not started yet" in capsys.readouterr().err
    bob.cancel_job(queued.job_id)
    with pytest.raises(SystemExit) as usage:
        job_cli.main(["logs", job.job_id, "--tail", "lots", *as_bob])
    assert usage.value.code == 2 and "not a byte count" in capsys.readouterr().err

    h20_site.stop()
    eventually(lambda: not gateway.running.core.registry.get(SITE).connected, what=f"{SITE} to disconnect")
    assert job_cli.main(["logs", job.job_id, *as_bob]) == 1
    err = capsys.readouterr().err
    assert f"site {SITE}" in err and "is the gateway running" not in err


def test_cli_follow_prints_until_the_job_ends(
    gateway: GatewayHandle,
    h20_site: AgentHandle,
    bob: FederationClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gate = tmp_path / "gate"
    job = bob.create_job(spec(JOB_PYTHON, "-c", WAIT_FOR_GATE, str(gate)))
    wait_until_running(bob, job)
    opener = open_gate_while_followed(gateway, gate)
    assert job_cli.main(["logs", job.job_id, "--follow", *flags(gateway, gateway.pki.user("panda-lm", "bob"))]) == 0
    opener.join(timeout=20)
    assert capsys.readouterr().out == "started\nfinished\n"
    assert bob.get_job(job.job_id).state == JobState.SUCCEEDED


# Writes `size` MiB of deterministic, non-repeating lines to stdout (about 20 bytes each).
WRITE_MIB = (
    "import sys\n"
    "out, size, i = sys.stdout.buffer, int(sys.argv[1]) << 20, 0\n"
    "while size > 0:\n"
    "    line = b'line %09d %s\\n' % (i, b'x' * (i % 7))\n"
    "    out.write(line[:size]); size -= len(line); i += 1\n"
)


def expected_output(mib: int) -> bytes:
    out, size, i = bytearray(), mib << 20, 0
    while size > 0:
        line = b"line %09d %s\n" % (i, b"x" * (i % 7))
        out += line[:size]
        size -= len(line)
        i += 1
    return bytes(out)


@pytest.mark.parametrize("mib", [20, 50])
def test_a_large_output_arrives_complete_and_in_order_for_a_reader_that_is_not_slow(
    gateway: GatewayHandle, h20_site: AgentHandle, bob: FederationClient, mib: int
) -> None:
    job = run_to_end(bob, spec(JOB_PYTHON, "-c", WRITE_MIB, str(mib)))
    assert job.state == JobState.SUCCEEDED
    digest, size = hashlib.sha256(), 0
    for piece in bob.stream_job_logs(job.job_id, timeout=60):
        digest.update(piece.data)
        size += len(piece.data)
    assert size == mib << 20
    assert digest.hexdigest() == hashlib.sha256(expected_output(mib)).hexdigest()
    assert gateway.running.core.logs.open_streams == 0


def test_a_stalled_reader_holds_back_neither_job_updates_nor_other_readers_and_bounds_what_the_gateway_holds(
    gateway: GatewayHandle, h20_site: AgentHandle, bob: FederationClient
) -> None:
    big = run_to_end(bob, spec(JOB_PYTHON, "-c", WRITE_MIB, "20"))
    relay = gateway.running.core.logs
    stalled = bob.stream_job_logs(big.job_id, timeout=60)
    head = next(stalled).data  # the reader takes one piece, then reads no more
    eventually(lambda: relay.held_bytes >= WINDOW_BYTES // 2, what="the site to fill the stalled stream's window")
    # Updates of another job on the same site still flow, and another reader reads to the end.
    small = run_to_end(bob, spec(JOB_PYTHON, "-c", PRINT_LINES))
    assert small.state == JobState.SUCCEEDED
    assert b"".join(p.data for p in bob.stream_job_logs(small.job_id, timeout=20)) == LINES
    assert relay.open_streams == 1 and relay.held_bytes <= WINDOW_BYTES  # the site waits for credit
    rest = b"".join(p.data for p in stalled)  # the reader comes back: nothing was lost meanwhile
    assert hashlib.sha256(head + rest).digest() == hashlib.sha256(expected_output(20)).digest()
    assert relay.open_streams == 0


def test_an_agent_that_ignores_credit_has_the_log_stream_ended_with_a_clear_reason_and_the_site_goes_on(
    gateway: GatewayHandle,
    h20_site: AgentHandle,
    bob: FederationClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="fedgate.gateway.logs")
    job = run_to_end(bob, spec(JOB_PYTHON, "-c", WRITE_MIB, "20"))

    def without_credit(message: site_pb2.ConnectResponse) -> LogCommand | None:  # as an agent before credit
        command = log_command_from_proto(message)
        if isinstance(command, LogCredit):
            return None
        return replace(command, window_bytes=0) if isinstance(command, LogRequest) else command

    monkeypatch.setattr(session, "log_command_from_proto", without_credit)
    pieces = bob.stream_job_logs(job.job_id, timeout=60)
    next(pieces)  # then the reader pauses while the site sends on
    eventually(lambda: "beyond its credit" in caplog.text, what="the gateway to end the stream")
    with pytest.raises(ClientError) as ended:
        list(pieces)  # what the transport already holds, then the reason
    assert gateway.running.core.logs.open_streams == 0
    assert (ended.value.code, ended.value.reason) == ("RESOURCE_EXHAUSTED", "LOG_CREDIT_EXCEEDED")
    assert f"site {SITE}" in ended.value.message and "beyond its credit" in ended.value.message
    small = run_to_end(bob, spec(JOB_PYTHON, "-c", PRINT_LINES))  # the site's stream goes on
    assert b"".join(p.data for p in bob.stream_job_logs(small.job_id, timeout=20)) == LINES
