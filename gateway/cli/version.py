"""`fedgate version`: this CLI's version and API, and, when a gateway is given (flags, environment or a context),
the API packages that gateway serves and whether it leads, asked through server reflection and health.

The gateway's own software version is not part of the contract (no call returns it), so it is reported as not
exposed rather than guessed. `fedgate --version` stays the one-line client version.

Owns: the arguments and printing of `fedgate version`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from importlib.metadata import version

from gateway.cli import output
from gateway.cli.connect import (
    EPILOG,
    EXIT_FAILED,
    EXIT_OK,
    add_connection_flags,
    client_from_args,
    gateway_given,
    run_command,
)
from gateway.transport.client import CLIENT_API

NOT_EXPOSED = "not exposed (no call of the API returns it)"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="fedgate version",
        description="The CLI's version and API; with a gateway given, the APIs it serves and whether it leads.",
        epilog=EPILOG,
    )
    add_connection_flags(top)
    output.add_output_flag(top)
    return top


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    return run_command("fedgate version", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    record: dict[str, object] = {"client": {"version": version("fedgate"), "api": CLIENT_API}}
    if not gateway_given(args):
        record["gateway"] = None
        _print(record, args.output, "gateway: not asked (give --gateway, FEDGATE_GATEWAY or a context)")
        return EXIT_OK
    with client_from_args(args) as client:
        found = client.describe_gateway()
    compatible = CLIENT_API in found.apis
    record["gateway"] = {
        "address": found.address,
        "version": None,
        "apis": list(found.apis),
        "leads": found.serving,
        "compatible": compatible,
    }
    apis = ", ".join(found.apis) or "none"
    note = "" if compatible else f"; this CLI speaks {CLIENT_API}: use a fedgate release that speaks {apis}"
    _print(
        record,
        args.output,
        f"gateway: {found.address}\n  version: {NOT_EXPOSED}\n  api: {apis}{note}\n"
        f"  leads: {'yes' if found.serving else 'no (a standby: calls go to the leader it names)'}",
    )
    return EXIT_OK if compatible else EXIT_FAILED


def _print(record: dict[str, object], fmt: str, gateway_text: str) -> None:
    if fmt != "table":
        print(output.render_record(record, fmt).rstrip("\n"))
        return
    print(f"client: fedgate {version('fedgate')}\n  api: {CLIENT_API}\n{gateway_text}")
