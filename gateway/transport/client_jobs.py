"""The client's job calls: submit, read, list, cancel, watch, stream logs, explain, usage, receipts and sites.

Owns: one method per JobService RPC, plain dataclasses in and out (paging followed for the caller). It does not
own the channel or the translation of a refused call (`gateway.transport.client_channel`), and it does not print
or exit. Users import it as part of `gateway.transport.client.FederationClient`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Generator, Iterator
from datetime import UTC, datetime
from typing import Any

import grpc

from fedgate.v1 import job_service_pb2 as job_pb
from gateway.errors import ClientError
from gateway.jobs.model import Job, JobEvent, JobSpec, JobState
from gateway.placement.place import Explanation
from gateway.sites.logs import LogPiece
from gateway.sites.model import SiteView
from gateway.transport import convert
from gateway.transport.client_channel import ClientChannel, error_from_rpc
from gateway.transport.receipts import settled_from_proto
from gateway.usage.model import UsageRow
from gateway.usage.receipts import SettledReceipt

RECONNECTS = 5
"""Times in a row a dropped watch is opened again (with no event in between) before its error is raised."""


class JobCalls(ClientChannel):
    """The JobService half of `FederationClient`."""

    def create_job(self, spec: JobSpec, request_id: str | None = None) -> Job:
        """Submit a job. Reusing a request_id returns the job the first call created (safe to retry)."""
        request = job_pb.CreateJobRequest(request_id=request_id or uuid.uuid4().hex, spec=convert.spec_to_proto(spec))
        return convert.job_from_proto(self._call(self._jobs.CreateJob, request).job)

    def get_job(self, job_id: str) -> Job:
        return convert.job_from_proto(self._call(self._jobs.GetJob, job_pb.GetJobRequest(job_id=job_id)).job)

    def list_jobs(
        self, tenant: str = "", project: str = "", states: tuple[JobState, ...] = (), limit: int = 1000
    ) -> list[Job]:
        """Jobs the caller may see, oldest first, following pages up to `limit` jobs."""
        jobs: list[Job] = []
        token = ""
        while len(jobs) < limit:
            request = job_pb.ListJobsRequest(
                tenant=tenant,
                project=project,
                states=[convert.state_to_proto(s) for s in states],
                page_size=min(500, limit - len(jobs)),
                page_token=token,
            )
            page = self._call(self._jobs.ListJobs, request)
            jobs.extend(convert.job_from_proto(j) for j in page.jobs)
            token = page.next_page_token
            if not token:
                break
        return jobs

    def cancel_job(self, job_id: str, reason: str = "") -> Job:
        request = job_pb.CancelJobRequest(job_id=job_id, reason=reason)
        return convert.job_from_proto(self._call(self._jobs.CancelJob, request).job)

    def watch_job(
        self,
        job_id: str,
        timeout: float | None = None,
        *,
        after_sequence: int | None = None,
        reconnects: int = RECONNECTS,
    ) -> Iterator[tuple[JobEvent, Job]]:
        """Yield (event, job) from the job's latest recorded event (or, with `after_sequence`, from the first
        event after it) until the job ends, or `timeout` seconds pass. A stream refused before its first event
        (a standby, a gateway gone) is opened again where the leader is; one that drops later (UNAVAILABLE: the
        connection cut, the gateway restarted or handed over) is opened again after the last event's sequence,
        so no event comes twice and none is lost, up to `reconnects` times in a row without an event between."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last = after_sequence
        failures = 0
        while True:
            request = job_pb.WatchJobRequest(job_id=job_id)
            if last is not None:
                request.after_sequence = last
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                for response in self._stream(lambda: self._jobs.WatchJob(request, timeout=left)):  # noqa: B023
                    failures = 0
                    last = response.event.sequence
                    yield convert.event_from_proto(response.event), convert.job_from_proto(response.job)
                return
            except ClientError as error:
                if error.code != "UNAVAILABLE" or failures >= reconnects:
                    raise
                failures += 1
                time.sleep(min(0.1 * 2**failures, 2.0))  # back off while the gateway comes back

    def stream_job_logs(
        self, job_id: str, *, follow: bool = False, tail_bytes: int = 0, timeout: float | None = None
    ) -> Generator[LogPiece, None, None]:
        """The output of the job's current attempt, in order, as the site sends it: everything written so far
        (or the last `tail_bytes` of it), and with `follow` what it writes until it ends. Leaving the loop early
        cancels the stream at the gateway and the site."""
        request = job_pb.StreamJobLogsRequest(job_id=job_id, follow=follow, tail_bytes=tail_bytes)
        for response in self._stream(lambda: self._jobs.StreamJobLogs(request, timeout=timeout)):
            yield LogPiece(response.data, response.site, response.epoch)

    def _stream(self, open_stream: Callable[[], Any]) -> Iterator[Any]:
        """The responses of a server stream, opened again at the leader when it fails before its first one
        (the unary calls' rule, `_move_on`); a failure after that ends it with the error. Leaving the loop
        early cancels the stream."""
        tries = 2 * len(self._targets) + 1
        while True:
            tries -= 1
            responses = open_stream()
            started = False
            try:
                for response in responses:
                    started = True
                    yield response
                return
            except grpc.RpcError as exc:
                if started or tries <= 0 or not self._move_on(exc):
                    raise error_from_rpc(exc) from None
            finally:
                responses.cancel()

    def explain_job(self, job_id: str = "", spec: JobSpec | None = None) -> Explanation:
        if spec is not None:
            request = job_pb.ExplainJobRequest(spec=convert.spec_to_proto(spec))
        else:
            request = job_pb.ExplainJobRequest(job_id=job_id)
        response = self._call(self._jobs.ExplainJob, request)
        return Explanation(
            response.admitted,
            tuple(convert.reason_from_proto(r) for r in response.reasons),
            tuple(convert.candidate_from_proto(c) for c in response.candidates),
            response.policy_version,
        )

    def usage(self, start: datetime, end: datetime | None = None, project: str = "") -> list[UsageRow]:
        """Usage rows of [start, end) (end: now, fixed at the first page), by tenant, project and class,
        following pages."""
        rows: list[UsageRow] = []
        token = ""
        end = end or datetime.now(UTC)  # one window for every page: a token is bound to it
        while True:
            request = job_pb.GetUsageRequest(
                start_time=convert.time_to_proto(start),
                end_time=convert.time_to_proto(end),
                project=project,
                page_size=500,
                page_token=token,
            )
            page = self._call(self._jobs.GetUsage, request)
            rows.extend(
                UsageRow(r.tenant, r.project, r.accelerator_class, r.card_hours, r.normalised_pflops_hours, r.attempts)
                for r in page.rows
            )
            token = page.next_page_token
            if not token:
                return rows

    def list_usage_receipts(
        self, start: datetime, end: datetime | None = None, project: str = ""
    ) -> list[SettledReceipt]:
        """Every settled receipt the caller may read of attempts that ended in [start, end), following pages.
        Each record is parsed from the signed bytes; verify them with `gateway.usage.receipts.settled_problems`."""
        receipts: list[SettledReceipt] = []
        token = ""
        end = end or datetime.now(UTC)  # one period for every page: a token is bound to it
        while True:
            request = job_pb.ListUsageReceiptsRequest(
                start_time=convert.time_to_proto(start), project=project, page_size=500, page_token=token
            )
            if end is not None:
                request.end_time.FromDatetime(end)
            page = self._call(self._jobs.ListUsageReceipts, request)
            receipts.extend(settled_from_proto(r) for r in page.receipts)
            token = page.next_page_token
            if not token:
                return receipts

    def list_sites(self) -> list[SiteView]:
        """Every member site, sorted by name, following pages."""
        sites: list[SiteView] = []
        token = ""
        while True:
            page = self._call(self._jobs.ListSites, job_pb.ListSitesRequest(page_size=500, page_token=token))
            sites.extend(convert.site_from_proto(s) for s in page.sites)
            token = page.next_page_token
            if not token:
                return sites
