"""`fedgate admin policy status|reload` and `fedgate admin site drain|resume`: federation admin commands (the
trust commands, tokens, revocation and audit, are `gateway.cli.trust`'s).

Owns: the arguments and the printing of the admin's policy and site commands; the calls are the client library's.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from gateway.cli import output
from gateway.cli.connect import EPILOG, EXIT_OK, add_connection_flags, client_from_args, run_command
from gateway.cli.sites import SITE_COLUMNS
from gateway.cli.trust import add_trust_commands, run_trust_command


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="fedgate admin", description="Federation admin commands.", epilog=EPILOG)
    groups = top.add_subparsers(dest="group", required=True)
    policy = groups.add_parser("policy", help="the federation policy in force").add_subparsers(
        dest="command", required=True
    )
    site = groups.add_parser("site", help="drain or resume a site").add_subparsers(dest="command", required=True)
    commands = [policy.add_parser("status"), policy.add_parser("reload")]
    for name in ("drain", "resume"):
        command = site.add_parser(name)
        command.add_argument("site")
        commands.append(command)
    commands += add_trust_commands(groups)
    for command in commands:
        add_connection_flags(command)
        output.add_output_flag(command)
    return top


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)

    def action() -> int:
        if args.group in {"join-token", "token", "revoke", "revocation", "audit"}:
            return run_trust_command(args)
        with client_from_args(args) as client:
            if args.group == "policy" and args.command == "status":
                status = client.policy_status()
                row = {
                    "version": status.version[:12],
                    "path": status.path,
                    "loaded": status.load_time,
                    "tenants": status.tenants,
                    "projects": status.projects,
                    "last_error": status.last_error or "-",
                }
                columns = [(k, k.upper()) for k in row]
                print(output.render([row], columns, args.output))
            elif args.group == "policy":
                version, changed = client.reload_policy()
                row = {"version": version[:12], "changed": changed}
                print(output.render([row], [("version", "VERSION"), ("changed", "CHANGED")], args.output))
            else:
                view = client.drain_site(args.site, args.command == "drain")
                print(output.render(output.site_rows(view), SITE_COLUMNS, args.output))
        return EXIT_OK

    return run_command(f"fedgate admin {args.group} {args.command}", action)
