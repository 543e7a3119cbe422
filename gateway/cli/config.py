"""`fedgate config view|get-contexts|current-context|use-context|set-context|delete-context`: the CLI's contexts.

A context names a gateway and the credentials to reach it, so that `fedgate job submit -f job.yaml` needs no
connection flags. The file is `gateway.cli.contextfile`'s; this module only parses arguments and prints.

Owns: the arguments and printing of `fedgate config`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from gateway.cli import output
from gateway.cli.connect import EXIT_FAILED, EXIT_OK, run_command
from gateway.cli.contextfile import Context, check_name, load_config, save_config
from gateway.errors import ConfigError

CONTEXT_COLUMNS = [("current", "CURRENT"), ("name", "NAME"), ("gateway", "GATEWAY"), ("auth", "AUTH")]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="fedgate config",
        description="Named contexts: a gateway and the credentials to reach it. The file is $FEDGATE_CONFIG, else"
        " $XDG_CONFIG_HOME/fedgate/config.yaml (~/.config/fedgate/config.yaml); relative paths in it are relative"
        " to its folder.",
        epilog="exit codes: 0 ok; 1 no current context; 2 bad usage or a malformed config file.",
    )
    sub = top.add_subparsers(dest="command", required=True)
    view = sub.add_parser("view", help="print the config file (tokens redacted unless --raw)")
    view.add_argument("--raw", action="store_true", help="show inline tokens")
    output.add_output_flag(view)
    view.set_defaults(output="yaml")
    output.add_output_flag(sub.add_parser("get-contexts", help="list the contexts, the current one marked *"))
    sub.add_parser("current-context", help="print the current context's name")
    use = sub.add_parser("use-context", help="make a context the current one")
    use.add_argument("name")
    delete = sub.add_parser("delete-context", help="remove a context")
    delete.add_argument("name")
    put = sub.add_parser(
        "set-context", help="create a context or change the keys given (the first context becomes current)"
    )
    put.add_argument("name")
    put.add_argument("--gateway", help="host:port[,host:port] (several: a gateway and its standbys)")
    put.add_argument("--creds", type=Path, help="a credentials directory: sets ca, cert and key to its PEM files")
    put.add_argument("--ca", type=Path, help="CA bundle that verifies the gateway")
    put.add_argument("--cert", type=Path, help="your certificate (with --key)")
    put.add_argument("--key", type=Path, help="your private key (with --cert)")
    put.add_argument("--token-file", type=Path, help="a file holding a bearer token (the public port), with --ca")
    put.add_argument("--current", action="store_true", help="also make it the current context")
    return top


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    return run_command(f"fedgate config {args.command}", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    config = load_config()
    if args.command == "view":
        print(output.render_record(config.to_data(redact=not args.raw), args.output).rstrip("\n"))
    elif args.command == "get-contexts":
        rows = [
            {
                "current": "*" if name == config.current_context else "",
                "name": name,
                "gateway": ctx.get("gateway"),
                "auth": _auth(ctx),
            }
            for name, ctx in config.contexts.items()
        ]
        print(output.render(rows, CONTEXT_COLUMNS, args.output))
    elif args.command == "current-context":
        if not config.current_context:
            print(
                f"fedgate config: no current context in {config.path}; run `fedgate config use-context NAME`",
                file=sys.stderr,
            )
            return EXIT_FAILED
        print(config.current_context)
    elif args.command == "use-context":
        config.context(args.name)  # refuses an unknown name, listing the known ones
        save_config(replace(config, current_context=args.name))
        print(f"current context: {args.name}")
    elif args.command == "delete-context":
        config.context(args.name)
        rest = {k: v for k, v in config.contexts.items() if k != args.name}
        current = "" if config.current_context == args.name else config.current_context
        save_config(replace(config, contexts=rest, current_context=current))
        print(f"deleted context {args.name}")
    else:
        return _set_context(args)
    return EXIT_OK


def _set_context(args: argparse.Namespace) -> int:
    config = load_config()
    name = check_name(args.name)
    old = config.contexts.get(name)
    values = dict(old.values) if old else {}
    paths: dict[str, Path | None] = {"ca": args.ca, "cert": args.cert, "key": args.key, "token-file": args.token_file}
    if args.creds is not None:
        for key in ("ca", "cert", "key"):
            paths[key] = paths[key] or args.creds / f"{key}.pem"
    if paths["token-file"] and (paths["cert"] or paths["key"]):
        raise ConfigError("give either --cert/--key or --creds (mTLS) or --token-file (the public port), not both")
    # A context speaks one way: new mTLS files drop an old token, a new token file drops old mTLS files.
    dropped = ("cert", "key", "token") if paths["token-file"] else ("token-file", "token") if paths["cert"] else ()
    for key in dropped:
        values.pop(key, None)
    if args.gateway:
        values["gateway"] = args.gateway
    for key, path in paths.items():
        if path is None:
            continue
        # What the user typed is relative to where they stand; the file stores it absolute.
        resolved = path.expanduser().absolute()
        if not resolved.exists():
            raise ConfigError(f"--{key} {resolved} does not exist; give the path of an existing file", reason="USAGE")
        values[key] = str(resolved)
    if not values.get("gateway"):
        raise ConfigError(f"context {name!r} needs --gateway HOST:PORT")
    if ("cert" in values) != ("key" in values):
        raise ConfigError("--cert and --key go together (or give --creds DIR)")
    base = config.path.parent
    updated = config.with_context(Context(name=name, values=values, base=base))
    if args.current or not config.current_context:
        updated = replace(updated, current_context=name)
    save_config(updated)
    state = "created" if old is None else "updated"
    current = " (current)" if updated.current_context == name else ""
    print(f"context {name} {state}{current} in {config.path}")
    return EXIT_OK


def _auth(context: Context) -> str:
    if context.get("cert"):
        return f"mtls: {context.get('cert')}"
    if context.get("token-file"):
        return f"token-file: {context.get('token-file')}"
    return "token (inline)" if context.get("token") else "-"
