"""One watch on the site's Jobs, in a thread of its own, feeding Job states to the event loop.

Owns: the list-then-watch loop over the namespace's Jobs that carry this site's label (one watch for the
whole site, never one per job), resuming from the last resourceVersion after the server ends a watch,
listing again after an error or an expired version (410), and backing off while the API server is away.
Each listed or watched Job is handed to `on_job(kind, job)` on the loop, where kind is "LISTED", "ADDED",
"MODIFIED" or "DELETED"; after each full list `on_listed(names, started_at)` gets the names seen and
when (time.monotonic) the list was asked for. It does not decide
what a Job's state means (`agents.backends.kubernetes.backend` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from agents.backends.kubernetes.api import KubeApi, KubeApiError, new_watcher

log = logging.getLogger(__name__)

RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0

JobCallback = Callable[[str, Mapping[str, Any]], None]


class JobWatch:
    """Lists and watches Jobs matching `selector`; call `start` once on the loop, `stop` to end it."""

    def __init__(
        self,
        api: KubeApi,
        selector: str,
        *,
        on_job: JobCallback,
        on_listed: Callable[[set[str], float], None],
    ) -> None:
        self._api = api
        self._selector = selector
        self._on_job = on_job
        self._on_listed = on_listed
        self._stopping = threading.Event()
        self._watcher: Any = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ended = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the watch thread (idempotent). Must be called on the event loop that gets the callbacks."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        # A daemon thread: a blocked read must never keep the agent's process alive.
        self._thread = threading.Thread(target=self._run_then_tell, name="fedgate-kube-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the watch: interrupt a blocked read and wait (bounded) for the thread."""
        self._stopping.set()
        watcher = self._watcher
        if watcher is not None:
            watcher.stop()  # shuts the socket down, which unblocks the read
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    async def wait_ended(self) -> None:
        """Return when the watch thread has ended (after `stop`, or because it died); call after `start`."""
        await self._ended.wait()

    def _run_then_tell(self) -> None:
        try:
            self._run()
        except BaseException:  # the thread ends here; the loop learns it through `wait_ended`
            log.exception("the Jobs watch thread died")
        finally:
            loop = self._loop
            if loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
                    loop.call_soon_threadsafe(self._ended.set)

    def _run(self) -> None:
        delay = RETRY_MIN_S
        version = ""
        listed = False
        while not self._stopping.is_set():
            try:
                if not listed:
                    version, listed = self._list(), True
                version = self._watch(version)
                delay = RETRY_MIN_S
            except KubeApiError as exc:
                listed = False
                if self._stopping.is_set():
                    break
                if exc.status == 410:
                    log.info("the Jobs watch expired; listing again")
                    continue
                log.warning("watching Jobs failed, retrying in %.1fs: %s", delay, exc.message)
                self._stopping.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            except Exception as exc:  # a dropped connection or a read timeout: list again, then watch
                listed = False
                if self._stopping.is_set():
                    break
                log.warning("the Jobs watch broke, listing again in %.1fs: %s", delay, exc)
                self._stopping.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    def _list(self) -> str:
        """List every Job, hand each to `on_job`, and return the version to watch from ("" = from now)."""
        started_at = time.monotonic()
        jobs, version = self._api.list_jobs(self._selector)
        names = set()
        for job in jobs:
            names.add(str((job.get("metadata") or {}).get("name", "")))
            self._post(self._on_job, "LISTED", job)
        self._post(self._on_listed, names, started_at)
        # Some test servers and proxies give no usable version; a watch from "now" is then still correct, as
        # it starts by sending every existing Job again.
        return version if version.isdigit() else ""

    def _watch(self, version: str) -> str:
        """Follow events from `version`; return the version to resume from when the server ends the watch."""
        watcher = new_watcher()
        self._watcher = watcher
        try:
            for event in self._api.watch_jobs(self._selector, version, watcher):
                kind = event.get("type")
                job = event.get("object") or {}
                if kind == "ERROR":
                    code = int(job.get("code") or 0)
                    raise KubeApiError(f"the watch ended with {code}: {job.get('message', '')}", status=code)
                found = str((job.get("metadata") or {}).get("resourceVersion") or "")
                if found:
                    version = found
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._post(self._on_job, str(kind), job)
                if self._stopping.is_set():
                    break
        finally:
            self._watcher = None
        return version

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed() or self._stopping.is_set():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
            loop.call_soon_threadsafe(callback, *args)
