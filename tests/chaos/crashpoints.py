"""Named crash points for kill -9 of a gateway process, without a hook in the product.

Owns: the text of a `sitecustomize.py` that a chaos test writes into a temp dir on the gateway process's
PYTHONPATH. At start it wraps one product function, chosen by `FEDGATE_CHAOS_CRASH`, so that the process sends
itself SIGKILL at that point (after `FEDGATE_CHAOS_CRASH_AFTER` times the point is reached, default 1), having
first written the point's name to `FEDGATE_CHAOS_CRASH_MARK` so the test knows the crash happened there and not
elsewhere. It does not start processes (`tests.chaos.fleet` does).

The points:
- `after-commit-before-reply`: the store's `create_jobs` returned (the jobs are durable), no client has its reply.
- `mid-cycle`: a cycle with two or more dispatches made them durable and sent the first LaunchCommand only.
- `mid-gang-reservation`: a gang's first part is held at its site and the Reserve for the next part was sent;
  no Commit was sent.
- `mid-receipt-settlement`: a batch carrying a usage receipt was written; the agent has no Ack for it.
- `mid-policy-reload`: a reload read and parsed the new policy file; it was not put in force.
"""

from __future__ import annotations

POINTS = (
    "after-commit-before-reply",
    "mid-cycle",
    "mid-gang-reservation",
    "mid-receipt-settlement",
    "mid-policy-reload",
)

SITECUSTOMIZE = '''
"""Loaded by a chaos test's gateway process only (PYTHONPATH): kill -9 at the point named by FEDGATE_CHAOS_CRASH."""
import functools
import os
import signal

POINT = os.environ.get("FEDGATE_CHAOS_CRASH", "")
AFTER = int(os.environ.get("FEDGATE_CHAOS_CRASH_AFTER", "1"))
MARK = os.environ.get("FEDGATE_CHAOS_CRASH_MARK", "")
_seen = [0]


def _reached():
    _seen[0] += 1
    if _seen[0] < AFTER:
        return
    if MARK:
        with open(MARK, "w") as out:
            out.write(POINT)
            out.flush()
            os.fsync(out.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


def _after(owner, name, when=lambda result, *args, **kwargs: True):
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        if when(result, *args, **kwargs):
            _reached()
        return result

    setattr(owner, name, wrapped)


def _install():
    if POINT == "after-commit-before-reply":
        from gateway.store.postgres.store import PostgresStore
        from gateway.store.sqlite import SqliteStore

        for store in (SqliteStore, PostgresStore):
            _after(store, "create_jobs")
    elif POINT == "mid-cycle":
        from gateway.scheduler.launcher import Launcher
        from gateway.sites.registry import SiteRegistry

        cycle = {"launches": 0}
        launch = Launcher.launch

        def launching(self, moves):
            cycle["launches"] = len(moves)
            try:
                return launch(self, moves)
            finally:
                cycle["launches"] = 0

        Launcher.launch = launching
        _after(SiteRegistry, "send", lambda result, self, site, command: cycle["launches"] >= 2)
    elif POINT == "mid-gang-reservation":
        from gateway.gangs.coordinator import GangCoordinator

        _after(GangCoordinator, "_ask", lambda result, self, gang, job: gang.asking >= 1)
    elif POINT == "mid-receipt-settlement":
        from gateway.store.postgres.store import PostgresStore
        from gateway.store.sqlite import SqliteStore

        for store in (SqliteStore, PostgresStore):
            _after(store, "save_transitions", lambda result, self, batch, receipts=(), cursors=(): bool(receipts))
    elif POINT == "mid-policy-reload":
        from gateway.policy import holder

        calls = {"n": 0}
        load = holder.load_policy

        def loading(path):
            policy = load(path)
            calls["n"] += 1
            if calls["n"] >= 2:  # the first load is the start's, not a reload
                _reached()
            return policy

        holder.load_policy = loading
    elif POINT:
        raise SystemExit(f"unknown crash point {POINT!r}")


_install()
'''
