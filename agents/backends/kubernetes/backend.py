"""The `kubernetes` backend: each attempt is one batch/v1 Job in the site's namespace, with one pod per node.

Owns: what the cluster has (node discovery, lowering the declared pools), refusing specs the cluster cannot
run (no image, a class it lacks, more cards than one node has, more nodes than it has), launching (through
`agents.backends.kubernetes.objects`, which creates the Job and the objects beside it), adopting a Job already
created for the same (job, epoch), turning the site's one Job watch into each attempt's exit status (of a
multi-node part: the failed pod's, with `ExitStatus.node` naming it), deleting every object on cancel, and
reading the log of the pod of rank 0 of the part. The Job's shape is `agents.backends.kubernetes.manifest`'s and
`.world`'s, the class rules `agents.backends.kubernetes.classes`', every API call
`agents.backends.kubernetes.api`'s; all blocking calls run in threads, never on the event loop.

Node discovery is the async `discover()`, which `agents.backends.registry.open_backend` awaits before the
runtime is built (listing the nodes in a thread); the synchronous `pools()` then only lowers the declared pools
to what it found, without I/O, and raises BackendError if `discover()` has not run.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agents.backends.base import BackendSettings, ExitStatus, JobHandle, LaunchSpec
from agents.backends.kubernetes.api import KubeApi, KubeApiError, load_api_client
from agents.backends.kubernetes.classes import (
    DEFAULT_RULES,
    ClassCapacity,
    ClassRule,
    discover,
    lower_pools,
    merge_rules,
)
from agents.backends.kubernetes.manifest import (
    CONTAINER,
    LABEL_SITE,
    Placement,
    exit_status_of,
    job_name,
    job_outcome,
    label_value,
    pod_cards,
)
from agents.backends.kubernetes.objects import AttemptObjects
from agents.backends.kubernetes.options import KubernetesOptions
from agents.backends.kubernetes.watch import JobWatch
from agents.backends.kubernetes.world import failing_pod, first_pod, node_name
from agents.core.model import PoolSpec
from agents.errors import BackendError, ConfigError, LaunchFailed

log = logging.getLogger(__name__)

# A Job deleted before it finished (by cancel, or by someone else) ended as if terminated.
TERMINATED = ExitStatus(exit_code=128 + signal.SIGTERM, signal_number=signal.SIGTERM)


@dataclass
class KubeHandle:
    """One attempt as a Job. `outcome` is resolved once, from the watch or by cancel."""

    job_id: str
    epoch: int
    name: str
    """The Job's name in the namespace."""
    outcome: asyncio.Future[ExitStatus]
    registered_at: float = field(default_factory=time.monotonic)
    settling: bool = False
    """Its end is being looked up (the failed pod's exit code); later events change nothing."""
    pod: str = ""
    """The pod whose log is the output once seen (index 0's: backoffLimit 0 never replaces it), so log reads skip
    the pod list."""
    nodes: int = 1
    """Pods of the Job, one per node."""
    first_rank: int = 0
    """Node rank of the pod of index 0."""


class KubernetesBackend:
    """Runs attempts as Kubernetes Jobs through the official client."""

    keeps_jobs = True
    """Jobs run on without the agent; a restarted agent finds them by their labels (`adopt`)."""

    def __init__(self, settings: BackendSettings, *, api: KubeApi | None = None) -> None:
        options = settings.options
        if not isinstance(options, KubernetesOptions):
            raise ConfigError("the kubernetes backend needs its options (backend.namespace at least)")
        self._options = options
        self._api = api or KubeApi(load_api_client(options.kubeconfig, options.context), options.namespace)
        self._objects = AttemptObjects(self._api, options)
        self._rules = merge_rules(DEFAULT_RULES, options.resources)
        self._found: dict[str, ClassCapacity] | None = None
        self._handles: dict[str, KubeHandle] = {}
        self._watch: JobWatch | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._watching = asyncio.Event()

    @property
    def name(self) -> str:
        return "kubernetes"

    async def discover(self) -> None:
        """List the cluster's nodes (in a thread) and count each class's capacity. Raises BackendError naming
        the fix when the API server does not answer or forbids listing nodes."""
        await asyncio.to_thread(self._discover)

    def pools(self, declared: Sequence[PoolSpec]) -> Sequence[PoolSpec]:
        if self._found is None:
            raise BackendError("the kubernetes backend has not looked at its cluster yet; await discover() first")
        return lower_pools(declared, self._found)

    async def launch(self, spec: LaunchSpec) -> KubeHandle:
        if not spec.command or not spec.command[0]:
            raise LaunchFailed(f"job {spec.job_id} has an empty command; give the run a command to execute")
        if not spec.image:
            raise LaunchFailed(
                f"job {spec.job_id} has no image, and a Kubernetes site runs every job in a container; "
                "give the run an image (or an image for the site's stack)"
            )
        placement = await self._placement(spec)
        self._start_watch(spec.site)
        job = await self._objects.create(spec, placement)
        handle = self._register(spec, str(job.get("metadata", {}).get("name") or self._job_name(spec)))
        self._on_job("LISTED", job)  # an adopted Job may have finished already
        log.debug("job %s epoch %d: Job %s", spec.job_id, spec.epoch, handle.name)
        return handle

    async def adopt(self, spec: LaunchSpec, recorded: Mapping[str, object] | None = None) -> KubeHandle | None:
        job = await self._objects.find(spec)
        if job is None:
            return None
        self._start_watch(spec.site)
        handle = self._register(spec, str(job["metadata"]["name"]))
        self._on_job("LISTED", job)  # it may have finished while nobody watched
        log.info("job %s epoch %d: adopted the existing Job %s", spec.job_id, spec.epoch, handle.name)
        return handle

    async def read_output(self, handle: JobHandle, offset: int, limit: int) -> bytes:
        job = _kube(handle)
        if limit <= 0:
            return b""
        try:
            if not job.pod:
                pod = first_pod(await self._pods_of(job.name))
                if pod is None:
                    return b""
                job.pod = str(pod["metadata"]["name"])
            data = await asyncio.to_thread(self._api.read_log, job.pod, max(offset, 0) + limit)
        except KubeApiError as exc:
            if exc.status in (400, 404):  # the container has not started, or the pod is gone
                return b""
            raise
        return data[max(offset, 0) : max(offset, 0) + limit]

    async def wait(self, handle: JobHandle) -> ExitStatus:
        return await asyncio.shield(_kube(handle).outcome)

    async def cancel(self, handle: JobHandle, grace_s: float) -> None:
        job = _kube(handle)
        await self._objects.remove(job.name, grace_s, multi=job.nodes > 1)
        # Background propagation removes the Job at once and its pods after their grace period.
        self._resolve(job, TERMINATED)

    async def watch(self) -> None:
        """The optional hook the agent owns as a supervised task: follows the Jobs watch thread (started with the
        first launch or adoption) and raises if it ends, which stops the agent instead of leaving every Job
        unwatched. The thread itself retries every failed list or watch; it ends only when stopped or broken."""
        await self._watching.wait()
        assert self._watch is not None
        await self._watch.wait_ended()
        raise BackendError("the Kubernetes Jobs watch thread ended; no Job's end would be seen any more")

    async def aclose(self) -> None:
        """Stop the watch thread. Attempts keep running on the cluster; a new agent adopts them."""
        if self._watch is not None:
            await asyncio.to_thread(self._watch.stop)
        for task in list(self._tasks):
            task.cancel()

    # -- internals ---------------------------------------------------------------------------------

    def _discover(self) -> dict[str, ClassCapacity]:
        self._found = discover(self._api.list_nodes(), self._rules)
        return self._found

    async def _placement(self, spec: LaunchSpec) -> Placement:
        found = self._found if self._found is not None else await asyncio.to_thread(self._discover)
        capacity = found.get(spec.accelerator_class)
        if capacity is None:
            here = ", ".join(sorted(found)) or "no accelerators"
            raise LaunchFailed(
                f"this cluster has no schedulable node with {spec.accelerator_class or '(no class)'}; it has {here}"
            )
        cards, nodes = pod_cards(spec), len(spec.nodes)
        if cards > capacity.largest_node:
            raise LaunchFailed(
                f"job {spec.job_id} needs {cards} cards of {spec.accelerator_class} in one pod, but the largest "
                f"node here has {capacity.largest_node}; ask for at most {capacity.largest_node} per node"
            )
        if len({len(devices) for devices in spec.nodes}) > 1:
            raise LaunchFailed(f"job {spec.job_id}: its nodes were given unequal cards; every pod asks for the same")
        if nodes > capacity.nodes:
            raise LaunchFailed(
                f"job {spec.job_id} needs {nodes} nodes of {spec.accelerator_class}, one pod on each, but this "
                f"cluster has {capacity.nodes} schedulable"
            )
        return placement_for(capacity, self._rules)

    def _job_name(self, spec: LaunchSpec) -> str:
        return job_name(spec.site, spec.job_id, spec.epoch)

    def _register(self, spec: LaunchSpec, name: str) -> KubeHandle:
        known = self._handles.get(name)
        if known is not None:
            return known
        handle = KubeHandle(spec.job_id, spec.epoch, name, asyncio.get_running_loop().create_future())
        handle.nodes, handle.first_rank = len(spec.nodes), spec.rendezvous.first_rank
        self._handles[name] = handle
        return handle

    def _start_watch(self, site: str) -> None:
        if self._watch is None:
            selector = f"{LABEL_SITE}={label_value(site)}"
            self._watch = JobWatch(self._api, selector, on_job=self._on_job, on_listed=self._on_listed)
            self._watch.start()
            self._watching.set()

    def _on_job(self, kind: str, job: Mapping[str, Any]) -> None:
        name = str((job.get("metadata") or {}).get("name", ""))
        handle = self._handles.get(name)
        if handle is None or handle.outcome.done() or handle.settling:
            return
        if kind == "DELETED":
            log.warning("job %s epoch %d: its Job %s was deleted before it finished", handle.job_id, handle.epoch, name)
            self._resolve(handle, TERMINATED)
            return
        succeeded = job_outcome(job)
        if succeeded is True:
            self._resolve(handle, ExitStatus(exit_code=0))
        elif succeeded is False:
            handle.settling = True
            self._spawn(self._settle_failed(handle))

    def _on_listed(self, names: set[str], started_at: float) -> None:
        for handle in list(self._handles.values()):
            # Created before this list began, yet not in it: the Job is gone (deleted while we were away).
            if handle.registered_at < started_at and handle.name not in names and not handle.settling:
                self._resolve(handle, TERMINATED)

    async def _settle_failed(self, handle: KubeHandle) -> None:
        """The failed Job's status: the exit of the pod that failed first (named, of a multi-node part)."""
        pod: Mapping[str, Any] | None
        try:
            pods = await self._pods_of(handle.name)
            pod = failing_pod(pods, CONTAINER) or first_pod(pods)
        except KubeApiError as exc:
            log.warning("job %s: cannot read its pods' exit codes: %s", handle.job_id, exc.message)
            pod = None
        except Exception:  # a bug must not leave the attempt unresolved: it ends failed, without its exit code
            log.exception("job %s: reading its pods' exit codes failed", handle.job_id)
            pod = None
        status = exit_status_of(False, pod)
        if handle.nodes > 1 and pod is not None:
            status = replace(status, node=node_name(pod, handle.first_rank))
        self._resolve(handle, status)

    async def _pods_of(self, name: str) -> list[dict[str, Any]]:
        """The Job's pods (the selector is a hint only: labels are checked here too)."""
        pods = await asyncio.to_thread(self._api.list_pods, f"job-name={name}")
        return [
            pod
            for pod in pods
            if name
            in {
                (pod.get("metadata", {}).get("labels") or {}).get("job-name"),
                (pod.get("metadata", {}).get("labels") or {}).get("batch.kubernetes.io/job-name"),
            }
        ]

    def _resolve(self, handle: KubeHandle, status: ExitStatus) -> None:
        if not handle.outcome.done():
            handle.outcome.set_result(status)
        self._handles.pop(handle.name, None)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def placement_for(capacity: ClassCapacity, rules: Sequence[ClassRule]) -> Placement:
    """Pin pods to the products seen for the class, or keep them off the other classes of the resource."""
    if not capacity.product_label:
        return Placement(capacity.resource)
    if capacity.products_seen and not capacity.unlabelled_nodes:
        return Placement(capacity.resource, capacity.product_label, tuple(sorted(capacity.products_seen)))
    others = {
        product
        for rule in rules
        if rule.resource == capacity.resource
        and rule.product_label == capacity.product_label
        and rule.accelerator_class != capacity.accelerator_class
        for product in rule.products
    }
    return Placement(capacity.resource, capacity.product_label, avoid_products=tuple(sorted(others)))


def _kube(handle: JobHandle) -> KubeHandle:
    if not isinstance(handle, KubeHandle):
        raise BackendError(f"the kubernetes backend was given a foreign handle ({type(handle).__name__})")
    return handle
