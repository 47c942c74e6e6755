from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from gateway.dependencies import AdminKey, JobCancelKey, JobWriteKey, ReadKey, RuntimeDep, actor_for
from gateway.schemas import EventPublic, JobCreate, JobCreated, JobPublic, MetricPublic, Page
from tunebridge import jobs, pausing
from tunebridge.jobs import JobRequest
from tunebridge.mixing import GeneralMix

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


@router.post("", status_code=201, response_model=JobCreated)
def create_job(body: JobCreate, request: Request, runtime: RuntimeDep,
               key: JobWriteKey) -> JobCreated:
    settings = runtime.settings
    created = jobs.create_job(
        db=runtime.db, registry=runtime.registry, clock=runtime.clock,
        policy=runtime.job_policy, request=JobRequest(
            training_dataset_id=body.training_dataset_id,
            validation_dataset_id=body.validation_dataset_id, base_model=body.base_model,
            backend=body.backend or settings.default_backend, method=body.method,
            hyperparameters=body.hyperparameters, options=body.options, suffix=body.suffix,
            notify_channel=body.notify.slack_channel if body.notify else None,
            general_mix=GeneralMix(**body.general_mix.model_dump()) if body.general_mix else None),
        creator=actor_for(key, request).name,
        idempotency_key=request.headers.get("idempotency-key"),
        default_channel=settings.slack_default_channel, blobs=runtime.blobs)
    runtime.wake_poll()
    public = JobPublic.model_validate(created.job).model_dump()
    return JobCreated(**public, warnings=[w.as_dict() for w in created.warnings])


@router.get("", response_model=Page[JobPublic])
def list_jobs(
    runtime: RuntimeDep, _: ReadKey,
    status: Annotated[list[str], Query()] = [],  # noqa: B006 (FastAPI reads, never mutates)
    backend: str | None = None, creator: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20, cursor: str | None = None,
) -> Page[JobPublic]:
    rows, next_cursor = jobs.list_jobs(db=runtime.db, limit=limit, cursor=cursor,
                                       statuses=status, backend=backend, creator=creator)
    return Page[JobPublic](data=[JobPublic.model_validate(r) for r in rows],
                           next_cursor=next_cursor, has_more=next_cursor is not None)


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: str, runtime: RuntimeDep, _: ReadKey) -> JobPublic:
    return JobPublic.model_validate(jobs.get_job(db=runtime.db, job_id=job_id))


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: str, request: Request, response: Response, runtime: RuntimeDep,
               key: JobCancelKey) -> JobPublic:
    job = jobs.cancel_job(db=runtime.db, clock=runtime.clock, job_id=job_id,
                          actor=actor_for(key, request))
    if job.status == "cancelling":
        response.status_code = 202  # accepted: the backend confirms on the next poll
        runtime.wake_poll()
    return JobPublic.model_validate(job)


@router.post("/{job_id}/pause", response_model=JobPublic)
async def pause_job(job_id: str, request: Request, runtime: RuntimeDep,
                    key: JobCancelKey) -> JobPublic:
    """Hold a running job at its provider (OpenAI); 409 for backends that cannot pause."""
    job = await pausing.pause_job(db=runtime.db, poller=runtime.poller,
                                  clock=runtime.clock, job_id=job_id,
                                  actor=actor_for(key, request))
    return JobPublic.model_validate(job)


@router.post("/{job_id}/resume", response_model=JobPublic)
async def resume_job(job_id: str, request: Request, runtime: RuntimeDep,
                     key: JobCancelKey) -> JobPublic:
    job = await pausing.resume_job(db=runtime.db, poller=runtime.poller,
                                   clock=runtime.clock, job_id=job_id,
                                   actor=actor_for(key, request))
    runtime.wake_poll()  # metrics flow again: fetch them now
    return JobPublic.model_validate(job)


@router.post("/{job_id}/approve", response_model=JobPublic)
def approve_job(job_id: str, request: Request, runtime: RuntimeDep,
                key: AdminKey) -> JobPublic:
    """Release a job held because its estimate is above the configured cost or GPU-time cap."""
    job = jobs.approve_job(db=runtime.db, clock=runtime.clock, job_id=job_id,
                           actor=actor_for(key, request))
    runtime.wake_poll()
    return JobPublic.model_validate(job)


@router.get("/{job_id}/events", response_model=Page[EventPublic])
def job_events(job_id: str, runtime: RuntimeDep, _: ReadKey,
               after: Annotated[int | None, Query(ge=0)] = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Page[EventPublic]:
    rows = jobs.job_events(db=runtime.db, job_id=job_id, after_id=after, limit=limit + 1)
    more = len(rows) > limit
    data = [EventPublic.model_validate(r) for r in rows[:limit]]
    return Page[EventPublic](data=data, has_more=more,
                             next_cursor=str(data[-1].id) if more and data else None)


@router.get("/{job_id}/metrics", response_model=Page[MetricPublic])
def job_metrics(job_id: str, runtime: RuntimeDep, _: ReadKey,
                after_step: Annotated[int | None, Query(ge=-1)] = None,
                limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> Page[MetricPublic]:
    rows = jobs.job_metrics(db=runtime.db, job_id=job_id, after_step=after_step,
                            limit=limit + 1)
    more = len(rows) > limit
    data = [MetricPublic.model_validate(r) for r in rows[:limit]]
    return Page[MetricPublic](data=data, has_more=more,
                              next_cursor=str(data[-1].step) if more and data else None)
