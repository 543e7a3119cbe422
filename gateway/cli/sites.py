"""`fedgate sites`: the member sites and the capacity they offer, as the caller may see them.

Owns: the arguments and printing of `fedgate sites`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from gateway.cli import output
from gateway.cli.connect import EPILOG, EXIT_OK, add_connection_flags, client_from_args, run_command

SITE_COLUMNS = [
    ("site", "SITE"),
    ("state", "STATE"),
    ("class", "CLASS"),
    ("total", "TOTAL"),
    ("offered", "OFFERED"),
    ("free", "FREE"),
    ("leased", "LEASED"),
    ("cards_per_node", "PER-NODE"),
    ("nodes", "NODES"),
    ("free_nodes", "FREE-NODES"),
    ("largest_free_on_node", "MOST-ON-A-NODE"),
    ("interconnect", "INTERCONNECT"),
]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="fedgate sites", description="List member sites.", epilog=EPILOG)
    add_connection_flags(top)
    output.add_output_flag(top)
    return top


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)

    def action() -> int:
        with client_from_args(args) as client:
            rows = [row for site in client.list_sites() for row in output.site_rows(site)]
        print(output.render(rows, SITE_COLUMNS, args.output))
        return EXIT_OK

    return run_command("fedgate sites", action)
