"""Putting one attempt's objects on the cluster, in an order that never leaves a Job without what it needs, and
taking them all back.

Owns: the order of the create calls (a multi-node part's headless Service before its Job, so its pods' DNS names
exist when they start; then the Service made owned by the created Job; Volcano's PodGroup after the Job it is
owned by), treating 409 as "made by an earlier try whose reply was lost" (the Job found then is this attempt's),
taking back what it made when a later step is refused, turning the API's refusals into `LaunchFailed` (the job's
fault, a 4xx) or `BackendError` (the site's), and removing every object of an attempt on cancel. Each blocking
call runs in a thread. The manifests are `agents.backends.kubernetes.manifest`'s and `.world`'s; what the Job's
state means is `agents.backends.kubernetes.backend`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from agents.backends.base import LaunchSpec
from agents.backends.kubernetes.api import KubeApi, KubeApiError
from agents.backends.kubernetes.manifest import (
    LABEL_EPOCH,
    LABEL_JOB_ID,
    Placement,
    is_ours,
    job_labels,
    job_manifest,
    job_name,
    label_value,
    podgroup_manifest,
)
from agents.backends.kubernetes.options import KubernetesOptions
from agents.backends.kubernetes.world import is_multi_node, owner_reference, service_manifest, service_name
from agents.errors import BackendError, LaunchFailed


class AttemptObjects:
    """Creates, finds and removes the cluster objects of attempts in one namespace."""

    def __init__(self, api: KubeApi, options: KubernetesOptions) -> None:
        self._api = api
        self._options = options

    async def create(self, spec: LaunchSpec, placement: Placement) -> dict[str, Any]:
        """Every object of `spec`'s attempt; the Job as the API server returned it (or as found, when an earlier
        try made it). Raises LaunchFailed / BackendError after taking back what this call made."""
        name = job_name(spec.site, spec.job_id, spec.epoch)
        multi = is_multi_node(spec)
        if multi:
            manifest = service_manifest(name, self._options.namespace, job_labels(spec))
            try:
                await _create(self._api.create_service, manifest)
            except KubeApiError as exc:
                raise refusal(spec, exc) from exc
        try:
            job = await asyncio.to_thread(self._api.create_job, job_manifest(spec, self._options, placement))
        except KubeApiError as exc:
            found = await self.find(spec) if exc.status == 409 else None
            if found is None:
                await self.remove(name, 0, multi=multi, job=False)
                raise refusal(spec, exc) from exc
            job = found  # created by an earlier try whose reply was lost: that one is ours
        try:
            owners = owner_reference(job)
            if multi and owners:
                await asyncio.to_thread(self._api.set_service_owners, service_name(name), owners)
            if self._options.gang == "volcano":
                group = podgroup_manifest(spec, self._options, placement, owner=job)
                await _create(self._api.create_podgroup, group)
        except KubeApiError as exc:
            # Pods would wait for a group that never comes, or a Service would outlive its Job: take all back.
            await self.remove(str(job["metadata"]["name"]), 0, multi=multi)
            raise refusal(spec, exc) from exc
        return job

    async def find(self, spec: LaunchSpec) -> dict[str, Any] | None:
        """The Job of `spec`'s attempt if it exists (the selector is a hint: labels and annotations are checked)."""
        selector = f"{LABEL_JOB_ID}={label_value(spec.job_id)},{LABEL_EPOCH}={spec.epoch}"
        jobs, _ = await asyncio.to_thread(self._api.list_jobs, selector)
        mine = [job for job in jobs if is_ours(job, spec.site, spec.job_id, spec.epoch)]
        return mine[0] if mine else None

    async def remove(self, name: str, grace_s: float, *, multi: bool, job: bool = True) -> None:
        """Delete the Job `name` (its pods go after `grace_s`, in the background) and the objects beside it; what
        is already gone is skipped. The garbage collector would delete the owned ones too, but not at once, and
        not those made before their owner's uid was known."""
        if job:
            await asyncio.to_thread(self._api.delete_job, name, grace_s)
        if self._options.gang == "volcano" and job:
            await asyncio.to_thread(self._api.delete_podgroup, name)
        if multi:
            await asyncio.to_thread(self._api.delete_service, service_name(name))


async def _create(create: Any, manifest: Mapping[str, Any]) -> None:
    """Create one object beside the Job; one already there (409) is this attempt's from an earlier try."""
    try:
        await asyncio.to_thread(create, manifest)
    except KubeApiError as exc:
        if exc.status != 409:
            raise


def refusal(spec: LaunchSpec, exc: KubeApiError) -> BackendError:
    """A 4xx is about this job (LaunchFailed, shown to its vendor); anything else is the site's trouble."""
    if 400 <= exc.status < 500:
        return LaunchFailed(f"the cluster refused job {spec.job_id}: {exc.message}")
    return BackendError(f"could not start job {spec.job_id}: {exc.message}")
