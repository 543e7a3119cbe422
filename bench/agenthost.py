"""Many real site agents in one asyncio process, for the fleet benchmarks (`python -m bench.agenthost`).

Owns: writing one agent config per site (the simulated backend, one pool of `--cards` cards of `--class`, its
own site certificate from `--pki/sites/<site>`), running the real agent (`agents.transport.connection.run_agent`)
for each as a task of one event loop, and draining them all on SIGTERM. One process for all agents keeps 100
of them affordable on a 2-core machine (separate processes would cost ~100 interpreters); each still dials
its own mTLS connection and runs the whole agent: Hello, capacity reports, launches, job updates, receipts.
The only departure from a deployed agent: its journal of unacknowledged updates is kept in memory
(`MemoryJournal`) rather than in a SQLite file per site, so that 100 journals' fsyncs on one disk do not stand
in for 100 machines' disks. It writes the ready file once every agent's task has started; whether they are
connected is for the benchmark to ask the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

import yaml

from agents.core.config import load_agent_config
from agents.journal.base import MemoryJournal
from agents.transport.connection import run_agent


def write_agent_config(
    site: str,
    creds: Path,
    gateway: str,
    workdir: Path,
    accelerator_class: str,
    cards: int,
    per_node: int,
    duration: float,
) -> Path:
    path = workdir / f"{site}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "fedgate.io/v1",
                "kind": "Agent",
                "site": site,
                "gateway": gateway,
                "tls": {k: str(creds / f"{k}.pem") for k in ("ca", "cert", "key")},
                "backend": {"type": "simulated", "default_duration_s": max(duration, 0.001)},
                "report_interval_s": 2,
                "cancel_grace_s": 0.5,
                "pools": [{"class": accelerator_class, "cards": cards, "cards_per_node": per_node}],
            }
        )
    )
    return path


async def host(args: argparse.Namespace) -> None:
    sites = [s for s in args.sites.read_text().split() if s]
    args.workdir.mkdir(parents=True, exist_ok=True)
    configs = [
        load_agent_config(
            write_agent_config(
                site,
                args.pki / "sites" / site,
                args.gateway,
                args.workdir,
                args.accelerator_class,
                args.cards,
                args.cards_per_node,
                args.duration,
            )
        )
        for site in sites
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tasks = [asyncio.create_task(run_agent(config, stop, journal=MemoryJournal())) for config in configs]
    tmp = args.ready_file.with_suffix(".tmp")
    tmp.write_text(f"{len(tasks)} agents\n")
    tmp.replace(args.ready_file)
    await stop.wait()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise SystemExit(f"{len(failed)} agents failed, first: {failed[0]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.agenthost", description=__doc__)
    parser.add_argument("--gateway", required=True, help="host:port of the gateway")
    parser.add_argument("--pki", required=True, type=Path, help="the bench PKI root (sites/<site>/ hold the creds)")
    parser.add_argument("--sites", required=True, type=Path, help="file naming one site per line")
    parser.add_argument("--workdir", required=True, type=Path, help="where the agents' configs are written")
    parser.add_argument("--class", dest="accelerator_class", required=True, help="the class every site offers")
    parser.add_argument("--cards", required=True, type=int, help="cards per site")
    parser.add_argument("--cards-per-node", type=int, default=0, help="cards per node (default: all on one node)")
    parser.add_argument("--duration", type=float, default=0.0, help="default simulated duration of a job, s")
    parser.add_argument("--ready-file", required=True, type=Path, help="written once every agent has started")
    args = parser.parse_args()
    args.cards_per_node = args.cards_per_node or args.cards
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(host(args))


if __name__ == "__main__":
    main()
