"""The `fedgate` command: a small dispatcher over subcommand groups that each package owns.

Owns: mapping a group name to the module that implements it, importing that module only when it is called
(so an agent-only install never loads gateway code), and the top-level help. It does not parse a group's
flags: each group's `main(argv) -> int` does, with the parser its `parser()` builds (which `fedgate completion`
also reads).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# group -> (module, one-line help). Modules are imported lazily by name.
GROUPS: dict[str, tuple[str, str]] = {
    "job": ("gateway.cli.job", "submit, get, list, cancel, watch and explain jobs (model vendors)"),
    "reservation": ("gateway.cli.reservation", "book cards ahead for a project: create, get, list, cancel"),
    "sites": ("gateway.cli.sites", "list member sites and the capacity they offer"),
    "gateway": ("gateway.cli.server", "run the federation gateway"),
    "admin": ("gateway.cli.admin", "policy status and reload, drain sites, tokens, revocation, audit (admins)"),
    "policy": ("gateway.cli.policy", "check, test, diff and explain policy files, offline"),
    "ca": ("gateway.cli.ca", "create the federation CA and issue certificates"),
    "creds": ("gateway.cli.creds", "show and renew your own certificate"),
    "usage": ("gateway.cli.usage", "verify signed usage receipts and total card-hours and compute"),
    "demo": ("gateway.cli.demo", "run a whole federation on loopback and submit a mix of jobs"),
    "simulate": ("gateway.cli.simulate", "replay a GPU-cluster trace: siloed vs federated vs pooled"),
    "agent": ("agents.cli.main", "run a site agent next to a centre's scheduler"),
    "config": ("gateway.cli.config", "named contexts (a gateway and your credentials): set, use, view"),
    "completion": ("fedgate.completion", "print a bash, zsh or fish completion script"),
    "version": ("gateway.cli.version", "this CLI's version and API, and those a gateway serves"),
}


def _usage() -> str:
    lines = ["usage: fedgate <group> [args...]", "", "groups:"]
    lines += [f"  {name:<11} {text}" for name, (_, text) in GROUPS.items()]
    lines += ["", "Run `fedgate <group> --help` for a group's commands."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0 if args else 2
    if args[0] == "--version":
        from importlib.metadata import version

        print(f"fedgate {version('fedgate')}")
        return 0
    group = GROUPS.get(args[0])
    if group is None:
        print(f"fedgate: unknown group {args[0]!r}; valid groups: {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(group[0])
    result: int = module.main(args[1:])
    return result


if __name__ == "__main__":
    raise SystemExit(main())
