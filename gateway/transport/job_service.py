"""JobService: model vendors submit, read, watch, cancel and explain jobs. Each method translates, calls one
domain method of `gateway.jobs.service.JobService` (job output: of the log relay), and translates back.

Owns: the JobService servicer: translation only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from fedgate.v1 import job_service_pb2 as pb
from fedgate.v1 import job_service_pb2_grpc
from gateway.errors import InvalidArgument
from gateway.jobs.model import Job
from gateway.jobs.service import JobService
from gateway.sites.logs import LogRelay
from gateway.sites.model import SiteView
from gateway.transport import convert
from gateway.transport.auth import Authenticator, Guarded, while_valid
from gateway.transport.errors import translate_errors, translate_stream_errors
from gateway.transport.listing import entry_size, list_budget
from gateway.transport.receipts import settled_to_proto
from gateway.transport.required import require_fields
from gateway.trust.service import Trust
from gateway.usage.receipts import SettledReceipt

Context = grpc.aio.ServicerContext[Any, Any]
MAX_REQUEST_ID = 128


def listed_size(job: Job) -> int:
    """A job's bytes inside a ListJobsResponse."""
    return entry_size(convert.job_to_proto(job))


def _site_size(site: SiteView) -> int:
    return entry_size(convert.site_to_proto(site))


def _receipt_size(receipt: SettledReceipt) -> int:
    return entry_size(settled_to_proto(receipt))


class JobServicer(Guarded, job_service_pb2_grpc.JobServiceServicer):
    def __init__(
        self,
        jobs: JobService,
        logs: LogRelay,
        auth: Authenticator,
        trust: Trust,
        check_period: float = 1.0,
        max_message_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.jobs = jobs
        self.list_budget = list_budget(max_message_bytes)
        self.logs = logs
        self.auth = auth
        self.trust = trust
        self.check_period = check_period

    @translate_errors
    async def CreateJob(self, request: pb.CreateJobRequest, context: Context) -> pb.CreateJobResponse:
        caller = self.auth.principal(context)
        require_fields(request)
        if len(request.request_id) > MAX_REQUEST_ID:
            raise InvalidArgument(f"request_id is longer than {MAX_REQUEST_ID} characters")
        job = await self.jobs.create_job(caller, convert.spec_from_proto(request.spec), request.request_id)
        return pb.CreateJobResponse(job=convert.job_to_proto(job))

    @translate_errors
    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.GetJobResponse:
        caller = self.auth.principal(context)
        require_fields(request)
        job = self.jobs.get_job(caller, request.job_id)
        return pb.GetJobResponse(job=convert.job_to_proto(job))

    @translate_errors
    async def ListJobs(self, request: pb.ListJobsRequest, context: Context) -> pb.ListJobsResponse:
        page = self.jobs.list_jobs(
            self.auth.principal(context),
            request.tenant,
            request.project,
            [convert.state_from_proto(s) for s in request.states],
            request.page_size,
            request.page_token,
            size_of=listed_size,
            budget=self.list_budget,
        )
        return pb.ListJobsResponse(
            jobs=[convert.job_to_proto(j) for j in page.jobs], next_page_token=page.next_page_token
        )

    @translate_errors
    async def CancelJob(self, request: pb.CancelJobRequest, context: Context) -> pb.CancelJobResponse:
        caller = self.auth.principal(context)
        require_fields(request)
        job = self.jobs.cancel_job(caller, request.job_id, request.reason)
        return pb.CancelJobResponse(job=convert.job_to_proto(job))

    @translate_stream_errors
    async def WatchJob(self, request: pb.WatchJobRequest, context: Context) -> AsyncIterator[pb.WatchJobResponse]:
        credential = self.auth.credential(context)
        require_fields(request)
        after = request.after_sequence if request.HasField("after_sequence") else None
        events = self.jobs.watch_job(credential.principal, request.job_id, after)
        async for watched in while_valid(events, lambda: self.trust.check(credential), self.check_period):
            yield pb.WatchJobResponse(
                event=convert.event_to_proto(watched.event),
                job=convert.job_to_proto(watched.job),
                replayed=watched.replayed,
            )

    @translate_stream_errors
    async def StreamJobLogs(
        self, request: pb.StreamJobLogsRequest, context: Context
    ) -> AsyncIterator[pb.StreamJobLogsResponse]:
        credential = self.auth.credential(context)
        require_fields(request)
        job = self.jobs.get_job(credential.principal, request.job_id)  # who may read it: as GetJob
        pieces = self.logs.stream(
            job, reader=credential.principal.share, follow=request.follow, tail_bytes=request.tail_bytes
        )
        async for piece in while_valid(pieces, lambda: self.trust.check(credential), self.check_period):
            yield pb.StreamJobLogsResponse(data=piece.data, site=piece.site, epoch=piece.epoch)

    @translate_errors
    async def ExplainJob(self, request: pb.ExplainJobRequest, context: Context) -> pb.ExplainJobResponse:
        caller = self.auth.principal(context)
        require_fields(request)  # a spec to dry-run is held to what CreateJob requires of it
        if request.WhichOneof("target") == "spec":
            explanation = self.jobs.explain(caller, spec=convert.spec_from_proto(request.spec))
        else:
            explanation = self.jobs.explain(caller, job_id=request.job_id)
        return pb.ExplainJobResponse(
            admitted=explanation.admitted,
            reasons=[convert.reason_to_proto(r) for r in explanation.reasons],
            candidates=[convert.candidate_to_proto(c) for c in explanation.candidates],
            policy_version=explanation.policy_version,
        )

    @translate_errors
    async def GetUsage(self, request: pb.GetUsageRequest, context: Context) -> pb.GetUsageResponse:
        start = convert.time_from_proto(request.start_time)
        end = convert.time_from_proto(request.end_time) if request.HasField("end_time") else None
        page = self.jobs.usage_report(
            self.auth.principal(context), start, end, request.project, request.page_size, request.page_token
        )
        return pb.GetUsageResponse(
            rows=[
                pb.UsageRow(
                    tenant=r.tenant,
                    project=r.project,
                    accelerator_class=r.accelerator_class,
                    card_hours=r.card_hours,
                    normalised_pflops_hours=r.normalised_pflops_hours,
                    attempts=r.attempts,
                )
                for r in page.items
            ],
            next_page_token=page.next_page_token,
        )

    @translate_errors
    async def ListUsageReceipts(
        self, request: pb.ListUsageReceiptsRequest, context: Context
    ) -> pb.ListUsageReceiptsResponse:
        end = convert.time_from_proto(request.end_time) if request.HasField("end_time") else None
        page = self.jobs.usage_receipts(
            self.auth.principal(context),
            convert.time_from_proto(request.start_time),
            end,
            request.project,
            request.page_size,
            request.page_token,
            size_of=_receipt_size,
            budget=self.list_budget,
        )
        return pb.ListUsageReceiptsResponse(
            receipts=[settled_to_proto(r) for r in page.receipts], next_page_token=page.next_page_token
        )

    @translate_errors
    async def ListSites(self, request: pb.ListSitesRequest, context: Context) -> pb.ListSitesResponse:
        page = self.jobs.list_sites(
            self.auth.principal(context),
            request.page_size,
            request.page_token,
            size_of=_site_size,
            budget=self.list_budget,
        )
        return pb.ListSitesResponse(
            sites=[convert.site_to_proto(s) for s in page.items], next_page_token=page.next_page_token
        )
