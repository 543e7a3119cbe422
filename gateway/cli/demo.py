"""`fedgate demo`: a whole federation on loopback with real mTLS, three centres, two vendors, one summary.

The last line is always `demo: <succeeded>/<total> jobs succeeded across <sites> sites in <seconds>s` when
the jobs ran; the exit code is 0 only when every job succeeded. Every process started is stopped on exit.

Owns: the `fedgate demo` command line and its exit code; the federation and its processes are `gateway.demo`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="fedgate demo", description=__doc__.splitlines()[0] if __doc__ else None)
    top.add_argument("--keep", action="store_true", help="keep the temporary directory (CA, logs, database)")
    top.add_argument("--timeout", type=float, default=45.0, help="seconds to wait for the jobs")
    top.add_argument(
        "--standby",
        action="store_true",
        help="run two gateways on one PostgreSQL (a leader and a standby) and kill the leader with -9 mid-run",
    )
    top.add_argument(
        "--store",
        default="",
        help="with --standby: the PostgreSQL URL to use (default: a throw-away cluster on this machine's PostgreSQL)",
    )
    return top


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)

    from gateway.demo.layout import write_layout
    from gateway.demo.run import DemoFailed, run_demo
    from gateway.errors import GatewayError

    root = Path(tempfile.mkdtemp(prefix="fedgate-demo-"))
    keep = args.keep
    cluster = None
    try:
        if args.standby:
            store = args.store
            if not store:
                from gateway.demo.pgcluster import PgCluster, PostgresUnavailable, start_cluster

                try:
                    cluster = start_cluster(PgCluster)
                except (PostgresUnavailable, RuntimeError) as exc:
                    print(f"demo: --standby needs PostgreSQL: {exc}; or pass --store postgresql://...", file=sys.stderr)
                    return 2
                store = cluster.url()
                print(f"demo: a throw-away PostgreSQL on 127.0.0.1:{cluster.port}", file=sys.stderr)
            layout = write_layout(root, store=store, gateways=2)
        else:
            layout = write_layout(root)
        return run_demo(layout, args.timeout)
    except (DemoFailed, GatewayError) as exc:
        print(f"demo: failed: {exc}; logs kept in {root / 'logs'}", file=sys.stderr)
        keep = True
        return 1
    except KeyboardInterrupt:
        print("demo: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130
    finally:
        if cluster is not None:
            cluster.destroy()
        if keep:
            print(f"demo: files kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
