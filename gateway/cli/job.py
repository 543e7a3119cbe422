"""`fedgate job submit|get|list|cancel|watch|explain|logs`: the model vendor's commands, a thin shell over
`FederationClient`. Each prints table, JSON or YAML (`-o`) and exits with a code from `gateway.cli.connect`.

Owns: the arguments and printing of the vendor's job commands.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.cli import output
from gateway.cli.connect import (
    EPILOG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    add_connection_flags,
    client_from_args,
    run_command,
)
from gateway.cli.logs import add_logs_parser, print_logs
from gateway.cli.usage import parse_time
from gateway.errors import ClientError
from gateway.jobs.model import Job, JobState
from gateway.jobs.specfile import load_job_spec
from gateway.transport.client import FederationClient

USAGE_COLUMNS = [
    ("tenant", "TENANT"),
    ("project", "PROJECT"),
    ("accelerator_class", "CLASS"),
    ("card_hours", "CARD-HOURS"),
    ("normalised_pflops_hours", "PFLOPS-HOURS"),
    ("attempts", "ATTEMPTS"),
]
JOB_COLUMNS = [
    ("job_id", "JOB"),
    ("tenant", "TENANT"),
    ("project", "PROJECT"),
    ("name", "NAME"),
    ("state", "STATE"),
    ("attempt", "ATTEMPT"),
    ("sites", "SITES"),
    ("class", "CLASS"),
    ("cards", "CARDS"),
    ("nodes", "NODES"),
    ("reason", "REASON"),
]
REASON_LOOK_S = 5.0
"""While waiting, how often the job's pending reason is looked at (the event stream carries state changes only)."""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="fedgate job", description="Submit and manage federated jobs.", epilog=EPILOG)
    sub = top.add_subparsers(dest="command", required=True)
    submit = sub.add_parser("submit", help="submit a job from a YAML file")
    submit.add_argument("-f", "--file", required=True, type=Path, help="job YAML (see examples/jobs/)")
    submit.add_argument(
        "--wait",
        action="store_true",
        help="wait until the job ends, showing why it waits; exit 0 only if it succeeded (6: --timeout passed)",
    )
    submit.add_argument("--request-id", default=None, help="idempotency key (default: random)")
    get = sub.add_parser("get", help="show one job")
    get.add_argument("job_id")
    lst = sub.add_parser("list", help="list jobs you may see")
    lst.add_argument("--tenant", default="")
    lst.add_argument("--project", default="")
    lst.add_argument("--state", action="append", default=[], choices=[s.value for s in JobState])
    lst.add_argument("--limit", type=int, default=1000)
    cancel = sub.add_parser("cancel", help="cancel a job")
    cancel.add_argument("job_id")
    cancel.add_argument("--reason", default="")
    watch = sub.add_parser("watch", help="follow a job's events until it ends")
    watch.add_argument("job_id")
    watch.add_argument(
        "--after",
        type=int,
        default=None,
        metavar="SEQUENCE",
        help="resume: only the events after this sequence (the number a previous watch printed first)",
    )
    usage = sub.add_parser("usage", help="card-hours and normalised compute of your projects (and joint ones)")
    usage.add_argument("--since", default="30d", help="how far back, e.g. 24h, 7d, or an ISO time (default 30d)")
    usage.add_argument("--project", default="")
    explain = sub.add_parser("explain", help="why a job is where it is, or where a spec would go (dry run)")
    target = explain.add_mutually_exclusive_group(required=True)
    target.add_argument("job_id", nargs="?")
    target.add_argument("-f", "--file", type=Path, dest="explain_file")
    logs = add_logs_parser(sub)
    for p in (submit, get, lst, cancel, watch, explain, usage, logs):
        add_connection_flags(p)
        output.add_output_flag(p)
    return top


def _print_jobs(jobs: Sequence[Job], fmt: str) -> None:
    print(output.render([output.job_row(j) for j in jobs], JOB_COLUMNS, fmt))


def _wait(client: FederationClient, job: Job, fmt: str, after: int | None = None, timeout: float | None = None) -> int:
    """Follow the job until it ends, or `timeout` seconds pass (then exit 6; the job goes on). The event stream
    says when the state changes; a job that waits says why, and that is looked at every REASON_LOOK_S."""
    deadline = None if timeout is None else time.monotonic() + timeout
    shown = ""
    while True:
        if job.state == JobState.QUEUED and job.reasons and job.reasons[-1].message != shown:
            shown = job.reasons[-1].message
            print(f"{job.job_id} waits: {shown} [{job.reasons[-1].code}]", file=sys.stderr)
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            _print_jobs([job], fmt)
            print(
                f"fedgate: gave up waiting after {timeout:g}s; the job goes on (`fedgate job watch {job.job_id}`)",
                file=sys.stderr,
            )
            return EXIT_TIMEOUT
        try:
            for event, current in client.watch_job(
                job.job_id, min(REASON_LOOK_S, left or REASON_LOOK_S), after_sequence=after
            ):
                if fmt == "table":
                    where = f" at {event.site}" if event.site else ""
                    print(
                        f"{event.sequence} {event.time:%H:%M:%S} {job.job_id} {event.state.value}{where}: "
                        f"{event.message}",
                        file=sys.stderr,
                    )
                after, job = event.sequence, current
            break
        except ClientError as exc:
            if exc.code != "DEADLINE_EXCEEDED":
                raise
        job = client.get_job(job.job_id)
        if job.state.terminal:
            break
    _print_jobs([job], fmt)
    return EXIT_OK if job.state == JobState.SUCCEEDED else EXIT_FAILED


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    prog = f"fedgate job {args.command}"

    def action() -> int:
        if args.command == "submit":
            spec = load_job_spec(args.file)  # a bad file fails before any connection is made
        with client_from_args(args) as client:
            if args.command == "submit":
                job = client.create_job(spec, args.request_id)
                if args.wait:
                    return _wait(client, job, args.output, timeout=args.timeout)
                _print_jobs([job], args.output)
            elif args.command == "get":  # one job: a record for people, an object for scripts
                row = output.job_row(client.get_job(args.job_id))
                if args.output == "table":
                    print(output.render([row], JOB_COLUMNS, "table"))
                else:
                    print(output.render_record(row, args.output))
            elif args.command == "list":
                states = tuple(JobState(s) for s in args.state)
                _print_jobs(client.list_jobs(args.tenant, args.project, states, args.limit), args.output)
            elif args.command == "cancel":
                _print_jobs([client.cancel_job(args.job_id, args.reason)], args.output)
            elif args.command == "watch":
                return _wait(client, client.get_job(args.job_id), args.output, args.after, args.timeout)
            elif args.command == "logs":
                return print_logs(client, args, prog)
            elif args.command == "usage":
                start = parse_time(args.since, "--since")  # 7d or an ISO time, as `fedgate usage --since`
                rows = [vars(r) for r in client.usage(start, project=args.project)]
                print(output.render(rows, USAGE_COLUMNS, args.output))
            elif args.command == "explain":
                spec_arg = load_job_spec(args.explain_file) if args.explain_file else None
                explanation = client.explain_job(args.job_id or "", spec_arg)
                print(output.render_explanation(explanation, args.output))
                return EXIT_OK if explanation.admitted else EXIT_FAILED
        return EXIT_OK

    return run_command(prog, action)
