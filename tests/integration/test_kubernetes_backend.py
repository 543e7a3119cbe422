"""The kubernetes backend against kmock: a real HTTP server speaking the Kubernetes API to the official client.

The backend is built from a real kubeconfig file pointing at kmock. kmock stores what it is sent, serves lists
and watches from that store and emits watch events for changes made over HTTP; it does not run a Job
controller, so the tests play the controller: they create the Job's pod and patch the Job's status over HTTP,
as the real controller would, and the backend must see that through its one watch.

What kmock (0.8) cannot do, read from its source: it ignores label selectors (the backend checks labels
again itself, which these tests rely on); it has no `pods/log` endpoint (the tests declare one); it gives
objects no uid or resourceVersion and never ends a watch nor honours `resourceVersion`/`timeoutSeconds`, so
the tests that need a Job's uid (to see the Service made owned by it) have kmock answer the create with one
(`with_uids`), the PodGroup's ownerReference is checked on the manifest (tests/unit/agents/test_kube_options.py)
and the watch's resume and 410 paths against a scripted API (tests/unit/agents/test_kube_watch.py). It has no
garbage collector either: what an owner's deletion would take along is deleted by the backend itself, and the
tests check that.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock as kmocklib
import pytest

from agents.backends.base import BackendSettings, LaunchSpec
from agents.backends.kubernetes.api import API_PERMISSIONS
from agents.backends.kubernetes.backend import KubernetesBackend
from agents.backends.kubernetes.classes import DEFAULT_RULES, discover
from agents.backends.kubernetes.manifest import job_name
from agents.backends.kubernetes.options import KubernetesOptions
from agents.core.commands import Cancel, Launch
from agents.core.config import AgentConfig, TlsFiles
from agents.core.model import JobState, JobUpdate, PoolSpec
from agents.core.runtime import SiteRuntime
from agents.errors import BackendError, LaunchFailed
from agents.journal.base import MemoryJournal
from fedgate.common.rendezvous import Rendezvous
from tests.waiting import eventually_async

NS = "fedgate-jobs"
SITE = "site-a"
JOBS = "batch/v1/jobs"
SERVICES = "v1/services"
PODGROUPS = "scheduling.volcano.sh/v1beta1/podgroups"


def node(
    name: str, resource: str, cards: int, labels: dict[str, str], *, ready: bool = True, cordoned: bool = False
) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"unschedulable": True} if cordoned else {},
        "status": {
            "allocatable": {"cpu": "96", "memory": "1Ti", resource: str(cards)},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
ASCEND_910B = {"node.kubernetes.io/npu.chip.name": "910B3"}


@pytest.fixture
async def cluster(kmock: Any) -> Any:
    with warnings.catch_warnings():  # kmock reads its bundle with a deprecated importlib call
        warnings.simplefilter("ignore", DeprecationWarning)
        kmock.resources.load_bundled()
    kmock.resources["scheduling.volcano.sh/v1beta1/podgroups"] = kmocklib.ResourceInfo(
        kind="PodGroup", namespaced=True, verbs={"create", "get", "list", "delete"}
    )
    for name, resource, cards, labels in [
        ("gpu-1", "nvidia.com/gpu", 8, H100),
        ("gpu-2", "nvidia.com/gpu", 8, H100),
        ("npu-1", "huawei.com/Ascend910", 8, ASCEND_910B),
        ("npu-2", "huawei.com/Ascend910", 16, {"node.kubernetes.io/npu.chip.name": "Ascend910C"}),
    ]:
        kmock.objects["v1/nodes", None, name] = node(name, resource, cards, labels)
    kmock.objects["v1/nodes", None, "gpu-down"] = node("gpu-down", "nvidia.com/gpu", 8, H100, ready=False)
    kmock.objects["v1/nodes", None, "gpu-cordoned"] = node("gpu-cordoned", "nvidia.com/gpu", 8, H100, cordoned=True)
    return kmock


def kubeconfig(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": url}}],
        "users": [{"name": "agent", "user": {"token": "t"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "agent"}}],
        "current-context": "kmock",
    }
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
async def make_backend(cluster: Any, tmp_path: Path) -> AsyncIterator[Any]:
    made: list[KubernetesBackend] = []
    config = kubeconfig(tmp_path, str(cluster.url).rstrip("/"))

    async def build(**options: Any) -> KubernetesBackend:
        settings = BackendSettings(
            "kubernetes", tmp_path, KubernetesOptions(namespace=NS, kubeconfig=config, **options)
        )
        backend = KubernetesBackend(settings)
        made.append(backend)
        return backend

    yield build
    for backend in made:
        await backend.aclose()


def spec(
    job_id: str = "job-1", *, epoch: int = 1, cls: str = "nvidia-h100", cards: int = 2, **extra: Any
) -> LaunchSpec:
    fields: dict[str, Any] = {
        "site": SITE,
        "job_id": job_id,
        "epoch": epoch,
        "attempt": 1,
        "accelerator_class": cls,
        "stack": "cuda",
        "command": ("python", "train.py"),
        "devices": tuple(range(cards)),
        "image": "registry.example/train:1",
        "max_runtime_s": 3600.0,
    }
    fields.update(extra)
    return LaunchSpec(**fields)


def two_node(job_id: str = "big", **extra: Any) -> LaunchSpec:
    """A part of two whole 8-card nodes, the whole world of its attempt."""
    nodes = (tuple(range(8)), tuple(range(8, 16)))
    return spec(job_id, cards=16, node_devices=nodes, rendezvous=Rendezvous.alone(2, 16), **extra)


def with_uids(cluster: Any) -> None:
    """Answer each created Job with a uid, as the API server does (kmock stores the Job as sent, without one)."""

    def created(request: Any) -> dict[str, Any]:
        job = dict(request.data)
        job["metadata"] = {**job["metadata"], "uid": f"uid-of-{job['metadata']['name']}"}
        return job

    cluster["post", kmocklib.resource("batch/v1/jobs")] << created


def node_pod(cluster: Any, s: LaunchSpec, index: int, exit_code: int | None, finished: str = "") -> str:
    """Play the Job controller: pod `index` of the attempt's Indexed Job, running or ended with `exit_code`."""
    name = job_name(s.site, s.job_id, s.epoch)
    pod = f"{name}-{index}-x{index}z"
    status: dict[str, Any] = {"phase": "Running"}
    if exit_code is not None:
        terminated = {"exitCode": exit_code, "finishedAt": finished}
        status = {"phase": "Failed" if exit_code else "Succeeded"}
        status["containerStatuses"] = [{"name": "job", "state": {"terminated": terminated}}]
    index_key = "batch.kubernetes.io/job-completion-index"
    cluster.objects["v1/pods", NS, pod] = {
        "metadata": {
            "name": pod,
            "namespace": NS,
            "labels": {"batch.kubernetes.io/job-name": name, "job-name": name, index_key: str(index)},
            "annotations": {index_key: str(index)},
        },
        "status": status,
    }
    return pod


def stored(cluster: Any, resource: str, name: str) -> dict[str, Any] | None:
    """The live object, None when it was deleted or never made."""
    try:
        found = cluster.objects[resource, NS, name]
    except KeyError:
        return None
    return None if found.deleted else dict(found.raw)


def stored_job(cluster: Any, s: LaunchSpec) -> dict[str, Any]:
    return dict(cluster.objects[JOBS, NS, job_name(s.site, s.job_id, s.epoch)].raw)


def live_jobs(cluster: Any) -> list[str]:
    jobs = kmocklib.resource("batch", "v1", "jobs")
    return [name for (resource, _, name), obj in cluster.objects.items() if resource == jobs and not obj.deleted]


async def finish(cluster: Any, s: LaunchSpec, condition: str, exit_code: int | None = None) -> None:
    """Play the Job controller: the pod ends with `exit_code`, then the Job gets its final condition."""
    name = job_name(s.site, s.job_id, s.epoch)
    if exit_code is not None:
        cluster.objects["v1/pods", NS, f"{name}-abcde"] = {
            "metadata": {"name": f"{name}-abcde", "namespace": NS, "labels": {"job-name": name}},
            "status": {
                "containerStatuses": [{"name": "job", "state": {"terminated": {"exitCode": exit_code}}}],
            },
        }
    status = {"status": {"conditions": [{"type": condition, "status": "True"}]}}
    async with cluster.patch(f"/apis/batch/v1/namespaces/{NS}/jobs/{name}/status", json=status) as response:
        assert response.status == 200


async def test_discovery_counts_ready_nodes_by_class_and_lowers_declared_pools(make_backend: Any) -> None:
    backend = await make_backend()
    declared = [
        PoolSpec("nvidia-h100", cards=64, offered=32, cards_per_node=8),
        PoolSpec("ascend-910b", cards=8, offered=8, cards_per_node=8),
        PoolSpec("ascend-910c", cards=16, offered=4, cards_per_node=32),
        PoolSpec("hygon-k100", cards=8, offered=8, cards_per_node=8),
    ]
    await backend.discover()  # as open_backend does before the runtime asks for pools
    pools = {p.accelerator_class: p for p in backend.pools(declared)}
    # Two Ready H100 nodes count; the NotReady and the cordoned one do not.
    assert pools["nvidia-h100"] == PoolSpec("nvidia-h100", cards=16, offered=16, cards_per_node=8)
    assert pools["ascend-910b"] == PoolSpec("ascend-910b", cards=8, offered=8, cards_per_node=8)
    assert pools["ascend-910c"] == PoolSpec("ascend-910c", cards=16, offered=4, cards_per_node=16)
    assert "hygon-k100" not in pools  # declared, but no node has it


async def test_launch_creates_one_job_with_labels_limits_affinity_and_env(
    make_backend: Any, cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDGATE_AGENT_TOKEN", "secret-of-the-agent")
    backend = await make_backend(service_account="trainer", image_pull_secrets=("regcred",))
    s = spec("Job_With/Odd:Chars", epoch=3, env={"LR": "0.1", "FEDGATE_EPOCH": "999"})
    handle = await backend.launch(s)
    job = stored_job(cluster, s)
    assert handle.name == job["metadata"]["name"]
    assert job["metadata"]["labels"]["fedgate.io/epoch"] == "3"
    assert job["metadata"]["labels"]["fedgate.io/site"] == SITE
    assert job["metadata"]["annotations"]["fedgate.io/job-id"] == "Job_With/Odd:Chars"
    assert "/" not in job["metadata"]["labels"]["fedgate.io/job-id"]
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 3600 + 60  # a backstop behind the agent's own limit
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "trainer"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    container = pod["containers"][0]
    assert container["image"] == "registry.example/train:1"
    assert container["command"] == ["python", "train.py"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LR"] == "0.1"
    assert env["FEDGATE_EPOCH"] == "3"  # ours win over the job's
    assert env["FEDGATE_JOB_ID"] == "Job_With/Odd:Chars"
    assert "FEDGATE_AGENT_TOKEN" not in env  # the agent's own settings never reach a pod
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [
        {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H100-80GB-HBM3"]}]}
    ]
    assert "schedulerName" not in pod and "suspend" not in job["spec"]


async def test_ascend_910b_pods_are_kept_off_910c_nodes(make_backend: Any, cluster: Any) -> None:
    backend = await make_backend()
    s = spec(cls="ascend-910b", cards=8, stack="cann")
    await backend.launch(s)
    pod = stored_job(cluster, s)["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"huawei.com/Ascend910": "8"}
    expression = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][
        0
    ]["matchExpressions"][0]
    assert expression == {"key": "node.kubernetes.io/npu.chip.name", "operator": "In", "values": ["910B3"]}


@pytest.mark.parametrize(("condition", "exit_code", "expected"), [("Complete", None, 0), ("Failed", 3, 3)])
async def test_wait_returns_the_exit_status_seen_through_the_watch(
    make_backend: Any, cluster: Any, condition: str, exit_code: int | None, expected: int
) -> None:
    backend = await make_backend()
    other = spec("job-other")
    s = spec("job-1")
    other_handle = await backend.launch(other)
    handle = await backend.launch(s)
    await finish(cluster, s, condition, exit_code)
    status = await asyncio.wait_for(backend.wait(handle), 10)
    assert status.exit_code == expected
    assert not other_handle.outcome.done()
    # One watch for the whole site, not one per job.
    watches = [r for r in cluster if r.params.get("watch") == "true"]
    assert len(watches) == 1


async def test_failed_job_without_a_pod_reports_a_generic_failure(make_backend: Any, cluster: Any) -> None:
    backend = await make_backend()
    s = spec()
    handle = await backend.launch(s)
    await finish(cluster, s, "Failed")
    status = await asyncio.wait_for(backend.wait(handle), 10)
    assert status.exit_code == 1
    assert not status.succeeded


async def test_cancel_deletes_the_job_and_is_safe_to_repeat(make_backend: Any, cluster: Any) -> None:
    backend = await make_backend()
    s = spec()
    handle = await backend.launch(s)
    await backend.cancel(handle, 7)
    assert live_jobs(cluster) == []
    delete = next(r for r in cluster if str(r.method).upper().endswith("DELETE"))
    assert delete.params == {"propagationPolicy": "Background", "gracePeriodSeconds": "7"}
    status = await asyncio.wait_for(backend.wait(handle), 10)
    assert status.signal_number == 15
    await backend.cancel(handle, 7)  # already gone: no error


async def test_a_launch_repeated_after_a_lost_reply_adopts_the_job_instead_of_creating_another(
    make_backend: Any, cluster: Any
) -> None:
    first = await make_backend()
    s = spec()
    await first.launch(s)
    await first.aclose()  # the agent restarts without ever having seen the reply
    second = await make_backend()
    assert await second.adopt(spec("job-1", epoch=2)) is None  # another epoch is another attempt
    adopted = await second.adopt(s)
    assert adopted is not None and adopted.name == job_name(SITE, "job-1", 1)
    again = await second.launch(s)  # and a repeated Launch meets 409 and adopts as well
    assert again.name == adopted.name
    assert live_jobs(cluster) == [adopted.name]
    await finish(cluster, s, "Complete")
    assert (await asyncio.wait_for(second.wait(again), 10)).succeeded


async def test_adopting_a_job_that_finished_while_nobody_watched_returns_its_end(
    make_backend: Any, cluster: Any
) -> None:
    first = await make_backend()
    s = spec()
    await first.launch(s)
    await first.aclose()
    await finish(cluster, s, "Failed", exit_code=137)
    second = await make_backend()
    handle = await second.adopt(s)
    assert handle is not None
    status = await asyncio.wait_for(second.wait(handle), 10)
    assert (status.exit_code, status.signal_number) == (137, 9)


async def test_read_output_slices_the_pods_log(make_backend: Any, cluster: Any) -> None:
    backend = await make_backend()
    s = spec()
    handle = await backend.launch(s)
    assert await backend.read_output(handle, 0, 100) == b""  # no pod yet
    name = job_name(s.site, s.job_id, s.epoch)
    cluster.objects["v1/pods", NS, f"{name}-x"] = {
        "metadata": {"name": f"{name}-x", "namespace": NS, "labels": {"batch.kubernetes.io/job-name": name}}
    }
    cluster.objects["v1/pods", NS, "someone-else"] = {
        "metadata": {"name": "someone-else", "namespace": NS, "labels": {"job-name": "other"}}
    }
    cluster["get", kmocklib.subresource("log"), kmocklib.name(f"{name}-x")] << b"epoch 1 loss 0.9\nepoch 2 loss 0.5\n"
    assert await backend.read_output(handle, 0, 7) == b"epoch 1"
    assert await backend.read_output(handle, 17, 100) == b"epoch 2 loss 0.5\n"
    assert await backend.read_output(handle, 34, 100) == b""


@pytest.mark.parametrize(
    ("s", "problem"),
    [
        (spec(image=""), "no image"),
        (spec(command=()), "empty command"),
        (spec(cls="hygon-k100"), "no schedulable node with hygon-k100"),
        (spec(cards=9), "largest node here has 8"),
    ],
)
async def test_bad_specs_are_refused_with_a_reason(
    make_backend: Any, cluster: Any, s: LaunchSpec, problem: str
) -> None:
    backend = await make_backend()
    with pytest.raises(LaunchFailed, match=problem):
        await backend.launch(s)
    assert live_jobs(cluster) == []


async def test_an_api_refusal_is_shown_with_the_apis_message(make_backend: Any, cluster: Any) -> None:
    cluster["post", kmocklib.resource("batch/v1/jobs")] << kmocklib.KubernetesError(
        status=422, reason="Invalid", message='Job.batch "x" is invalid: spec.template: forbidden by policy'
    )
    backend = await make_backend()
    with pytest.raises(LaunchFailed, match=r"422.*forbidden by policy"):
        await backend.launch(spec())


async def test_volcano_gang_creates_a_podgroup_and_schedules_with_volcano(make_backend: Any, cluster: Any) -> None:
    backend = await make_backend(gang="volcano", queue="federation")
    s = spec(cards=8)
    handle = await backend.launch(s)
    job = stored_job(cluster, s)
    group = dict(cluster.objects["scheduling.volcano.sh/v1beta1/podgroups", NS, handle.name].raw)
    assert group["spec"] == {"minMember": 1, "minResources": {"nvidia.com/gpu": "8"}, "queue": "federation"}
    template = job["spec"]["template"]
    assert template["spec"]["schedulerName"] == "volcano"
    assert template["metadata"]["annotations"]["scheduling.k8s.io/group-name"] == handle.name
    await backend.cancel(handle, 0)
    assert cluster.objects["scheduling.volcano.sh/v1beta1/podgroups", NS, handle.name].deleted


async def test_a_refused_podgroup_takes_the_job_back_and_says_why(make_backend: Any, cluster: Any) -> None:
    cluster["post", kmocklib.resource("scheduling.volcano.sh/v1beta1/podgroups")] << kmocklib.KubernetesError(
        status=403, reason="Forbidden", message="podgroups is forbidden: User cannot create resource"
    )
    backend = await make_backend(gang="volcano")
    with pytest.raises(LaunchFailed, match=r"403: podgroups is forbidden.*docs/kubernetes-rbac.md"):
        await backend.launch(spec())
    assert live_jobs(cluster) == []


async def test_an_unreachable_or_forbidding_api_server_stops_discovery_with_a_clear_error(
    make_backend: Any, cluster: Any
) -> None:
    cluster["get", kmocklib.resource("v1/nodes")] << kmocklib.KubernetesError(
        status=403, reason="Forbidden", message='nodes is forbidden: User "agent" cannot list resource "nodes"'
    )
    backend = await make_backend()
    with pytest.raises(BackendError, match=r"cannot list nodes: .*403: nodes is forbidden.*kubernetes-rbac.md"):
        await backend.discover()


async def test_kueue_gang_creates_a_suspended_job_in_the_queue(make_backend: Any, cluster: Any) -> None:
    backend = await make_backend(gang="kueue", queue="team-a")
    s = spec()
    await backend.launch(s)
    job = stored_job(cluster, s)
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert "schedulerName" not in job["spec"]["template"]["spec"]


async def test_every_api_call_the_backend_made_is_in_its_permission_table(make_backend: Any, cluster: Any) -> None:
    with_uids(cluster)  # so the multi-node part's Service is made owned by its Job, as on a real cluster
    backend = await make_backend(gang="volcano")
    await backend.discover()  # lists nodes, as the agent's start does
    s = spec()
    handle = await backend.launch(s)
    await backend.adopt(s)
    cluster.objects["v1/pods", NS, "p"] = {
        "metadata": {"name": "p", "namespace": NS, "labels": {"job-name": handle.name}}
    }
    cluster["get", kmocklib.subresource("log")] << b"log line\n"
    assert await backend.read_output(handle, 0, 3) == b"log"
    await finish(cluster, s, "Failed", exit_code=2)
    assert (await asyncio.wait_for(backend.wait(handle), 10)).exit_code == 2
    await backend.cancel(handle, 0)
    await backend.cancel(await backend.launch(two_node()), 0)  # its headless Service: create, own, delete
    verbs = {
        "list": "list",
        "watch": "watch",
        "fetch": "get",
        "create": "create",
        "delete": "delete",
        "update": "patch",
    }
    used = set()
    for request in cluster:
        if request.resource is None or request.action is None:
            continue
        if not request.headers.get("User-Agent", "").startswith("OpenAPI-Generator"):
            continue  # the test's own calls, playing the Job controller
        resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        used.add((request.resource.group or "", resource, verbs[str(request.action.value).lower()]))
    assert used == API_PERMISSIONS  # each listed permission is used, and nothing else


def runtime_config() -> AgentConfig:
    """An agent config for a SiteRuntime over the backend: 32 of 64 H100s offered, nodes of 8."""
    return AgentConfig(
        site=SITE,
        gateway="127.0.0.1:1",
        tls=TlsFiles(Path("ca"), Path("cert"), Path("key")),
        backend=BackendSettings("kubernetes", Path("."), KubernetesOptions(namespace=NS)),
        pools=(PoolSpec("nvidia-h100", cards=64, offered=32, cards_per_node=8, stack="cuda"),),
        cancel_grace_s=0.2,
    )


async def test_the_agent_runtime_runs_reports_and_cancels_jobs_through_the_backend(
    make_backend: Any, cluster: Any
) -> None:
    backend = await make_backend()
    config = runtime_config()
    # As the agent's start does (open_backend): discover first, then the runtime's pools() does no I/O.
    await backend.discover()
    runtime = SiteRuntime(config, backend, MemoryJournal())
    assert [(c.total, c.offered) for c in runtime.capacity()] == [(16, 16)]
    image = "registry.example/train:1"
    await runtime.handle(Launch("done", 1, 1, "nvidia-h100", 2, ("train",), image=image, max_runtime_s=60))
    await runtime.handle(Launch("broken", 1, 1, "nvidia-h100", 2, ("train",), image=image))
    await runtime.handle(Launch("long", 1, 1, "nvidia-h100", 2, ("train",), image=image))
    await runtime.handle(Launch("noimage", 1, 1, "nvidia-h100", 2, ("train",)))
    await finish(cluster, spec("done"), "Complete")
    await finish(cluster, spec("broken"), "Failed", exit_code=4)
    await runtime.handle(Cancel("long", 1, reason="vendor"))

    def finals() -> dict[str, JobUpdate]:
        return {u.job_id: u for u in runtime.unacknowledged_updates() if u.state.is_final}

    await eventually_async(lambda: len(finals()) == 4, what="all four attempts to end")
    ended = finals()
    assert (ended["done"].state, ended["done"].exit_code) == (JobState.SUCCEEDED, 0)
    assert (ended["broken"].state, ended["broken"].exit_code) == (JobState.FAILED, 4)
    assert (ended["long"].state, ended["long"].exit_code) == (JobState.CANCELLED, 143)
    assert ended["noimage"].state is JobState.FAILED and "no image" in ended["noimage"].message
    assert live_jobs(cluster) == [job_name(SITE, "done", 1), job_name(SITE, "broken", 1)]


def test_discover_ignores_unknown_nvidia_products() -> None:
    found = discover(
        [node("rtx", "nvidia.com/gpu", 4, {"nvidia.com/gpu.product": "NVIDIA-GeForce-RTX-4090"})], DEFAULT_RULES
    )
    assert found == {}


async def test_a_two_node_part_is_a_headless_service_then_one_indexed_job_of_spread_pods(
    make_backend: Any, cluster: Any
) -> None:
    with_uids(cluster)
    backend = await make_backend()
    s = two_node()
    handle = await backend.launch(s)
    name = handle.name
    service = stored(cluster, SERVICES, name)
    assert service is not None
    labels = {"fedgate.io/job-id": "big", "fedgate.io/epoch": "1", "fedgate.io/site": SITE}
    assert service["spec"] == {"clusterIP": "None", "selector": labels, "publishNotReadyAddresses": True}
    # Owned by the Job once it exists (so the garbage collector takes it with the Job), made before it.
    assert service["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": f"uid-of-{name}"}
    ]
    patch = next(r for r in cluster if str(r.method).upper().endswith("PATCH"))
    assert patch.headers["Content-Type"] == "application/merge-patch+json"  # a dict body is no JSON Patch
    posts = [r.resource.plural for r in cluster if str(r.method).upper().endswith("POST") and r.resource]
    assert posts == ["services", "jobs"]
    assert live_jobs(cluster) == [name]
    job = stored_job(cluster, s)
    assert {k: job["spec"].get(k) for k in ("completionMode", "completions", "parallelism", "backoffLimit")} == {
        "completionMode": "Indexed",
        "completions": 2,
        "parallelism": 2,
        "backoffLimit": 0,
    }
    assert job["spec"]["podFailurePolicy"]["rules"][0]["action"] == "FailJob"
    pod = job["spec"]["template"]["spec"]
    assert pod["subdomain"] == name
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == [
        {"labelSelector": {"matchLabels": labels}, "topologyKey": "kubernetes.io/hostname"}
    ]
    env = pod["containers"][0]["env"]
    index_field = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert env[0] == {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"fieldPath": index_field}}}
    values = {e["name"]: e.get("value") for e in env}
    assert values["FEDGATE_NODE_RANK"] == values["NODE_RANK"] == "$(JOB_COMPLETION_INDEX)"
    assert values["FEDGATE_MASTER_ADDR"] == values["MASTER_ADDR"] == f"{name}-0.{name}.{NS}.svc"
    assert (values["FEDGATE_MASTER_PORT"], values["FEDGATE_NNODES"], values["FEDGATE_WORLD_SIZE"]) == (
        "29500",
        "2",
        "16",
    )


@pytest.mark.parametrize("gang", ["volcano", "kueue"])
async def test_a_two_node_part_is_gang_scheduled_as_the_cluster_offers(
    make_backend: Any, cluster: Any, gang: str
) -> None:
    backend = await make_backend(gang=gang, queue="federation")
    s = two_node()
    handle = await backend.launch(s)
    job = stored_job(cluster, s)
    group = stored(cluster, PODGROUPS, handle.name)
    if gang == "volcano":  # both pods or none
        assert group is not None
        assert group["spec"] == {"minMember": 2, "minResources": {"nvidia.com/gpu": "16"}, "queue": "federation"}
        assert job["spec"]["template"]["spec"]["schedulerName"] == "volcano"
    else:  # Kueue admits a suspended Job whole: its pod count is the parallelism
        assert group is None
        assert (job["spec"]["suspend"], job["spec"]["parallelism"]) == (True, 2)
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "federation"


async def test_one_failed_node_fails_the_attempt_once_and_names_that_node(make_backend: Any, cluster: Any) -> None:
    backend = await make_backend()
    await backend.discover()
    config = runtime_config()
    runtime = SiteRuntime(config, backend, MemoryJournal())
    image = "registry.example/train:1"
    await runtime.handle(Launch("big", 1, 1, "nvidia-h100", 16, ("train",), image=image, nodes=2))
    s = two_node()
    name = job_name(SITE, "big", 1)
    await eventually_async(lambda: stored(cluster, JOBS, name) is not None, what="the Job to be created")
    # The controller: node 1 exits 3; then it ends node 0 (SIGTERM, later) and marks the Job failed, twice over.
    failed = node_pod(cluster, s, 1, 3, "2025-01-01T00:00:04Z")
    node_pod(cluster, s, 0, 143, "2025-01-01T00:00:06Z")
    await finish(cluster, s, "Failed")
    await finish(cluster, s, "Failed")

    def finals() -> list[JobUpdate]:
        return [u for u in runtime.unacknowledged_updates() if u.job_id == "big" and u.state.is_final]

    await eventually_async(lambda: len(finals()) >= 1, what="the attempt to end")
    await finish(cluster, s, "Failed")  # a late event: already reported
    ended = finals()
    assert len(ended) == 1
    assert (ended[0].state, ended[0].exit_code) == (JobState.FAILED, 3)
    assert ended[0].message == f"exited with code 3 on node 1 ({failed})"


async def test_cancel_deletes_the_job_its_service_and_its_group(make_backend: Any, cluster: Any) -> None:
    backend = await make_backend(gang="volcano")
    handle = await backend.launch(two_node())
    assert stored(cluster, SERVICES, handle.name) is not None
    await backend.cancel(handle, 5)
    assert live_jobs(cluster) == []
    assert stored(cluster, SERVICES, handle.name) is None
    assert stored(cluster, PODGROUPS, handle.name) is None
    assert (await asyncio.wait_for(backend.wait(handle), 10)).signal_number == 15
    await backend.cancel(handle, 5)  # already gone: no error


async def test_a_refused_job_takes_its_service_back(make_backend: Any, cluster: Any) -> None:
    cluster["post", kmocklib.resource("batch/v1/jobs")] << kmocklib.KubernetesError(
        status=422, reason="Invalid", message="spec.template.spec.subdomain: forbidden by policy"
    )
    backend = await make_backend()
    with pytest.raises(LaunchFailed, match="forbidden by policy"):
        await backend.launch(two_node())
    assert stored(cluster, SERVICES, job_name(SITE, "big", 1)) is None


async def test_a_part_of_more_nodes_than_the_cluster_has_is_refused(make_backend: Any, cluster: Any) -> None:
    backend = await make_backend()
    nodes = tuple(tuple(range(i * 8, i * 8 + 8)) for i in range(3))
    s = spec("huge", cards=24, node_devices=nodes, rendezvous=Rendezvous.alone(3, 24))
    with pytest.raises(LaunchFailed, match="needs 3 nodes of nvidia-h100, one pod on each, but this cluster has 2"):
        await backend.launch(s)
    assert live_jobs(cluster) == [] and stored(cluster, SERVICES, job_name(SITE, "huge", 1)) is None
