"""The site's one Jobs watch resumes from its last resourceVersion and lists again after an expired one.

kmock neither ends watches nor honours resourceVersion, so these paths run against a scripted fake API.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from agents.backends.kubernetes.api import KubeApiError
from agents.backends.kubernetes.watch import JobWatch
from tests.waiting import eventually_async


def job(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": version}}


class ScriptedApi:
    """Answers list_jobs and watch_jobs from scripts; the last watch blocks until the test releases it."""

    def __init__(self, lists: list[tuple[list[dict[str, Any]], str]], watches: list[list[dict[str, Any]]]) -> None:
        self.lists = lists
        self.watches = watches
        self.calls: list[tuple[str, str]] = []
        self.release = threading.Event()

    def list_jobs(self, selector: str) -> tuple[list[dict[str, Any]], str]:
        self.calls.append(("list", selector))
        return self.lists.pop(0)

    def watch_jobs(self, selector: str, version: str, watcher: Any) -> Iterator[dict[str, Any]]:
        self.calls.append(("watch", version))
        if not self.watches:
            self.release.wait(10)
            return
        for event in self.watches.pop(0):
            if event.get("type") == "ERROR":
                raise KubeApiError("expired", status=int(event["object"]["code"]))
            yield event


async def test_the_watch_resumes_from_its_version_and_lists_again_after_410() -> None:
    api = ScriptedApi(
        lists=[([job("a", "10")], "10"), ([], "20")],
        watches=[
            [{"type": "MODIFIED", "object": job("a", "11")}],  # then the server ends the watch
            [{"type": "ERROR", "object": {"code": 410, "message": "too old"}}],
        ],
    )
    seen: list[tuple[str, str]] = []
    listed: list[set[str]] = []

    def on_job(kind: str, obj: Mapping[str, Any]) -> None:
        seen.append((kind, obj["metadata"]["resourceVersion"]))

    watch = JobWatch(api, "fedgate.io/site=a", on_job=on_job, on_listed=lambda names, _: listed.append(names))  # type: ignore[arg-type]
    watch.start()
    try:
        await eventually_async(lambda: len(api.calls) == 5, what="list, watch, resume, relist, watch")
    finally:
        api.release.set()
        await asyncio.to_thread(watch.stop)
    assert api.calls[:5] == [
        ("list", "fedgate.io/site=a"),
        ("watch", "10"),
        ("watch", "11"),  # resumed where the ended watch left off
        ("list", "fedgate.io/site=a"),  # 410: the version expired, so list again
        ("watch", "20"),
    ]
    await eventually_async(lambda: len(listed) == 2, what="both lists delivered")
    assert seen == [("LISTED", "10"), ("MODIFIED", "11")]
    assert listed == [{"a"}, set()]
    assert not watch.running


class Unrecoverable(BaseException):
    """Something the watch's retry loop does not catch (its retries cover Exception only)."""


class DyingApi(ScriptedApi):
    def list_jobs(self, selector: str) -> tuple[list[dict[str, Any]], str]:
        raise Unrecoverable("the client library broke")


async def test_a_watch_thread_that_dies_is_noticed_on_the_loop() -> None:
    watch = JobWatch(DyingApi([], []), "fedgate.io/site=a", on_job=lambda *_: None, on_listed=lambda *_: None)  # type: ignore[arg-type]
    watch.start()
    # The backend's watch hook awaits this; the agent's supervisor then stops the agent with a non-zero exit.
    await asyncio.wait_for(watch.wait_ended(), 5)
    await asyncio.to_thread(watch.stop)
    assert not watch.running
