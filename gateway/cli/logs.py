"""`fedgate job logs JOB [--follow] [--tail BYTES]`: a job's output, streamed from its site through the gateway.

Owns: the command's flags, writing the output as it comes (raw bytes with `-o table`, the default, flushed per
chunk; one JSON object per line or one YAML document per chunk with `-o json|yaml`) and its exit codes: 0 when
the site has sent everything (with --follow: once the job has ended), 1 when the log cannot be served (the job
has not started, the site is offline or went away, the reader fell behind), 4 when the job does not exist or
is not yours to see. It does not decide anything: `FederationClient.stream_job_logs` does the call.
"""

from __future__ import annotations

import argparse
import codecs
import json
import re
import sys
from typing import BinaryIO

import yaml

from gateway.cli.connect import EXIT_FAILED, EXIT_OK
from gateway.errors import ClientError
from gateway.transport.client import FederationClient

_SIZE = re.compile(r"(\d+)([KMG]i?B?)?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
SITE_REASONS = frozenset({"SITE_OFFLINE", "SITE_DISCONNECTED"})
"""UNAVAILABLE for these means the job's site, not the gateway: exit 1 with the gateway's message, not 3."""


def byte_count(text: str) -> int:
    """'4096', '64K', '1MiB' -> bytes (units are powers of 1024)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a byte count; use e.g. 4096, 64K or 1M")
    unit = (match.group(2) or "")[:1].upper()
    return int(match.group(1)) * _UNITS[unit]


def add_logs_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    logs = sub.add_parser("logs", help="print a job's output (from its site, as it runs with --follow)")
    logs.add_argument("job_id")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    logs.add_argument(
        "--tail", type=byte_count, default=0, metavar="BYTES", help="start BYTES before the end (e.g. 4096, 64K)"
    )
    return logs


def print_logs(client: FederationClient, args: argparse.Namespace, prog: str) -> int:
    out = sys.stdout
    out.flush()
    binary: BinaryIO = out.buffer
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span two chunks
    pieces = client.stream_job_logs(args.job_id, follow=args.follow, tail_bytes=args.tail)
    try:
        for piece in pieces:
            if args.output == "table":
                binary.write(piece.data)
                binary.flush()
                continue
            record = {
                "job_id": args.job_id,
                "site": piece.site,
                "epoch": piece.epoch,
                "text": decoder.decode(piece.data),
            }
            if args.output == "json":
                out.write(json.dumps(record) + "\n")
            else:
                out.write(yaml.safe_dump(record, explicit_start=True, sort_keys=False))
            out.flush()
    except ClientError as exc:
        if exc.reason not in SITE_REASONS:
            raise
        print(f"{prog}: {exc.message} [{exc.code}/{exc.reason}]", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # the reader (e.g. `| head`) has what it wanted
        return EXIT_OK
    finally:
        pieces.close()  # cancels the stream at the gateway and the site if it has not ended
    return EXIT_OK
