"""The one place the agent calls the Kubernetes API, through the official (synchronous) client.

Owns: building the client (a kubeconfig file or the pod's in-cluster service account), each API call the
backend makes as a small blocking method that speaks raw JSON dicts, the table of (API group, resource, verb)
those calls need (`API_PERMISSIONS`, which a unit test compares with docs/rbac/agent-role.yaml), and turning
the client's exceptions into `KubeApiError` with the API server's own message. It does not run anything on
the event loop: callers wrap every method in `asyncio.to_thread` (or a thread of their own, for the watch).
Importing this module imports `kubernetes`, so only the kubernetes backend imports it, when it is built.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from agents.errors import BackendError, ConfigError

try:
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes import watch as k8s_watch
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
    from urllib3.exceptions import HTTPError
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    raise ConfigError(
        "the kubernetes backend needs the Kubernetes client, which is not installed; "
        "run: pip install 'fedgate[kubernetes]'"
    ) from exc

# The client's config loaders and Watch carry no annotations.
_config: Any = k8s_config
_watch: Any = k8s_watch

VOLCANO_GROUP, VOLCANO_VERSION, PODGROUPS = "scheduling.volcano.sh", "v1beta1", "podgroups"

API_PERMISSIONS: frozenset[tuple[str, str, str]] = frozenset(
    {
        ("", "nodes", "list"),
        ("batch", "jobs", "create"),
        ("batch", "jobs", "list"),
        ("batch", "jobs", "watch"),
        ("batch", "jobs", "delete"),
        ("", "pods", "list"),
        ("", "pods/log", "get"),
        ("", "services", "create"),
        ("", "services", "patch"),
        ("", "services", "delete"),
        (VOLCANO_GROUP, PODGROUPS, "create"),
        (VOLCANO_GROUP, PODGROUPS, "delete"),
    }
)
"""Every (API group, resource, verb) a method below uses; "" is the core group. Keep in step with the methods."""

# Seconds. A watch asks the server to end it after WATCH_SECONDS (it is then resumed from its last
# resourceVersion); the read timeout is longer, so a silent server cannot hang the watch thread forever.
CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 30.0
WATCH_SECONDS = 300
WATCH_READ_TIMEOUT_S = WATCH_SECONDS + 30.0


class KubeApiError(BackendError):
    """The API server refused or failed a call. `status` is the HTTP status (0: no answer)."""

    reason = "KUBERNETES_API"

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def load_api_client(kubeconfig: Path | None, context: str) -> k8s_client.ApiClient:
    """A client for the configured cluster; ConfigError saying what to fix when it cannot be configured."""
    configuration = k8s_client.Configuration()
    try:
        if kubeconfig is None:
            _config.load_incluster_config(client_configuration=configuration)
        else:
            _config.load_kube_config(
                config_file=str(kubeconfig), context=context or None, client_configuration=configuration
            )
    except (ConfigException, OSError) as exc:
        where = f"kubeconfig {kubeconfig}" if kubeconfig else "the in-cluster service account"
        fix = "check backend.kubeconfig and backend.context" if kubeconfig else "set backend.kubeconfig"
        raise ConfigError(f"cannot configure the Kubernetes client from {where}: {exc}; {fix}") from exc
    return k8s_client.ApiClient(configuration)


class KubeApi:
    """Blocking calls on one cluster namespace. Thread-safe: the client's connection pool is."""

    def __init__(self, api_client: k8s_client.ApiClient, namespace: str) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self._core = k8s_client.CoreV1Api(api_client)
        self._batch = k8s_client.BatchV1Api(api_client)
        self._custom = k8s_client.CustomObjectsApi(api_client)

    def list_nodes(self) -> list[dict[str, Any]]:
        return _items(self._call("list nodes", self._core.list_node, _preload_content=False))

    def create_job(self, manifest: dict[str, Any]) -> dict[str, Any]:
        body = cast(Any, manifest)
        return _json(self._call("create the Job", self._batch.create_namespaced_job, self.namespace, body))

    def list_jobs(self, selector: str) -> tuple[list[dict[str, Any]], str]:
        """The namespace's Jobs (the selector is a hint: callers filter again) and the list's resourceVersion."""
        data = _json(self._call("list Jobs", self._batch.list_namespaced_job, self.namespace, label_selector=selector))
        return list(data.get("items") or []), str((data.get("metadata") or {}).get("resourceVersion") or "")

    def delete_job(self, name: str, grace_s: float) -> bool:
        """Delete a Job and (in the background) its pods; False if it was already gone."""
        try:
            self._call(
                "delete the Job",
                self._batch.delete_namespaced_job,
                name,
                self.namespace,
                propagation_policy="Background",
                grace_period_seconds=max(0, round(grace_s)),
            )
        except KubeApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def list_pods(self, selector: str) -> list[dict[str, Any]]:
        return _items(self._call("list pods", self._core.list_namespaced_pod, self.namespace, label_selector=selector))

    def read_log(self, pod: str, limit_bytes: int) -> bytes:
        response: Any = self._call(
            "read the pod's log",
            self._core.read_namespaced_pod_log,
            pod,
            self.namespace,
            limit_bytes=max(limit_bytes, 1),
        )
        return bytes(response.data)

    def create_service(self, manifest: dict[str, Any]) -> None:
        body = cast(Any, manifest)
        self._call("create the Service", self._core.create_namespaced_service, self.namespace, body)

    def set_service_owners(self, name: str, owners: list[dict[str, str]]) -> None:
        """Make the Service owned by `owners` (a JSON merge patch of its ownerReferences, which it had none of)."""
        self._call(
            "make the Service owned by its Job",
            self._core.patch_namespaced_service,
            name,
            self.namespace,
            {"metadata": {"ownerReferences": owners}},
            _content_type="application/merge-patch+json",
        )

    def delete_service(self, name: str) -> None:
        """Delete a Service; nothing if it was already gone."""
        try:
            self._call("delete the Service", self._core.delete_namespaced_service, name, self.namespace)
        except KubeApiError as exc:
            if exc.status != 404:
                raise

    def create_podgroup(self, manifest: dict[str, Any]) -> None:
        self._call(
            "create the PodGroup",
            self._custom.create_namespaced_custom_object,
            VOLCANO_GROUP,
            VOLCANO_VERSION,
            self.namespace,
            PODGROUPS,
            manifest,
        )

    def delete_podgroup(self, name: str) -> None:
        try:
            self._call(
                "delete the PodGroup",
                self._custom.delete_namespaced_custom_object,
                VOLCANO_GROUP,
                VOLCANO_VERSION,
                self.namespace,
                PODGROUPS,
                name,
            )
        except KubeApiError as exc:
            if exc.status != 404:
                raise

    def watch_jobs(self, selector: str, resource_version: str, watcher: Any) -> Iterator[dict[str, Any]]:
        """Raw watch events ({"type", "object"}) of the namespace's Jobs until the server ends the watch.

        `watcher` is a `kubernetes.watch.Watch` the caller may `stop()` from another thread.
        """
        kwargs: dict[str, Any] = {
            "label_selector": selector,
            "timeout_seconds": WATCH_SECONDS,
            "allow_watch_bookmarks": True,
            "deserialize": False,
            "_request_timeout": (CONNECT_TIMEOUT_S, WATCH_READ_TIMEOUT_S),
        }
        if resource_version:
            kwargs["resource_version"] = resource_version
        stream = watcher.stream(self._batch.list_namespaced_job, self.namespace, **kwargs)
        return cast(Iterator[dict[str, Any]], stream)

    def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_preload_content", False)
        kwargs.setdefault("_request_timeout", (CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S))
        try:
            return method(*args, **kwargs)
        except ApiException as exc:
            raise api_error(what, exc) from exc
        except (OSError, HTTPError) as exc:  # refused, reset, timed out, retries exhausted
            raise KubeApiError(f"cannot {what}: the API server did not answer ({exc})", status=0) from exc


def new_watcher() -> Any:
    return _watch.Watch()


def api_error(what: str, exc: ApiException) -> KubeApiError:
    """The API's own message (`Status.message`) when it sent one, else the HTTP reason."""
    status = int(exc.status or 0)
    message = str(exc.reason or "")
    try:
        body = json.loads(exc.body or "")
        message = str(body.get("message") or message)
    except (ValueError, AttributeError):
        pass
    hint = " (check the agent's RBAC: docs/kubernetes-rbac.md)" if status == 403 else ""
    return KubeApiError(f"cannot {what}: the Kubernetes API answered {status}: {message}{hint}", status=status)


def _json(response: Any) -> dict[str, Any]:
    data = json.loads(response.data or b"{}")
    return cast(dict[str, Any], data if isinstance(data, dict) else {})


def _items(response: Any) -> list[dict[str, Any]]:
    return list(_json(response).get("items") or [])
