"""OpenAI-compatible `/v1` surface: files and fine-tuning jobs, in OpenAI's shapes and errors,
so clients keep the OpenAI SDK and change only `base_url` and the key."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from gateway import openai_shapes as shapes
from gateway.dependencies import (
    DatasetWriteKey,
    JobCancelKey,
    JobWriteKey,
    ReadKey,
    RuntimeDep,
    actor_for,
)
from gateway.errors import status_for
from gateway.routers.datasets import stage_upload
from tunebridge import datasets, hyperparameters, jobs, pausing
from tunebridge.errors import InvalidInput, TunebridgeError
from tunebridge.jobs import JobRequest
from tunebridge.runtime import Runtime


class OpenAIErrorRoute(APIRoute):
    """Errors in OpenAI's `{"error": {message, type, param, code}}` shape on this router only."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except TunebridgeError as exc:
                status = status_for(exc)
                return JSONResponse(shapes.error_body(exc, status), status_code=status)
            except RequestValidationError as exc:
                err = exc.errors()[0] if exc.errors() else {}
                problem = InvalidInput("invalid_request", str(err.get("msg", "invalid request")))
                body = shapes.error_body(problem, 400)
                body["error"]["param"] = ".".join(str(p) for p in err.get("loc", ())[1:]) or None
                return JSONResponse(body, status_code=400)

        return handler


router = APIRouter(prefix="/v1", tags=["openai-compatible"], route_class=OpenAIErrorRoute)


class MethodSpec(BaseModel):
    type: str = "supervised"
    supervised: dict[str, Any] | None = None
    dpo: dict[str, Any] | None = None


class FineTuningJobCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    training_file: str = Field(max_length=40)
    validation_file: str | None = Field(default=None, max_length=40)
    hyperparameters: dict[str, Any] | None = None
    method: MethodSpec | None = None
    suffix: str | None = Field(default=None, max_length=64)
    seed: int | None = None
    metadata: dict[str, str] | None = None


@router.post("/files")
async def create_file(request: Request, runtime: RuntimeDep, key: DatasetWriteKey
                      ) -> dict[str, Any]:
    staged, name = await stage_upload(request, runtime, None)
    stored = await run_in_threadpool(lambda: datasets.store_dataset(
        db=runtime.db, blobs=runtime.blobs, clock=runtime.clock, staged=staged, filename=name,
        creator=f"key:{key.name}", limits=runtime.validation_limits))
    return shapes.file_object(stored.dataset)


@router.get("/files/{file_id}")
def retrieve_file(file_id: str, runtime: RuntimeDep, _: ReadKey) -> dict[str, Any]:
    return shapes.file_object(datasets.get_dataset(db=runtime.db, dataset_id=file_id))


def _backend_for(model: str, runtime: Runtime) -> str:
    mapped = runtime.settings.openai_compat_models.get(model)
    if mapped:
        return mapped
    if model.startswith(("gpt-", "ft:gpt-")) and "openai" in runtime.registry:
        return "openai"
    return runtime.settings.default_backend


def _hyperparameters(body: FineTuningJobCreate, method: str, backend: str) -> dict[str, Any]:
    """OpenAI's knobs (with "auto") to ours; for local training the multiplier scales the
    seed's default learning rate."""
    given = dict(body.hyperparameters or {})
    if body.method is not None:
        section = body.method.dpo if method == "dpo" else body.method.supervised
        given.update((section or {}).get("hyperparameters", {}))
    given = {k: v for k, v in given.items() if v != "auto"}
    if body.seed is not None:
        given["seed"] = body.seed
    multiplier = given.pop("learning_rate_multiplier", None) if backend != "openai" else None
    if multiplier is not None:
        base = next(k.default for k in hyperparameters.knobs_for(method, backend)
                    if k.name == "learning_rate")
        given["learning_rate"] = base * float(multiplier)
    return given


@router.post("/fine_tuning/jobs")
def create_fine_tuning_job(body: FineTuningJobCreate, request: Request, runtime: RuntimeDep,
                           key: JobWriteKey) -> dict[str, Any]:
    method = "dpo" if body.method is not None and body.method.type == "dpo" else "sft"
    backend = _backend_for(body.model, runtime)
    created = jobs.create_job(
        db=runtime.db, registry=runtime.registry, clock=runtime.clock,
        policy=runtime.job_policy, creator=actor_for(key, request).name,
        idempotency_key=request.headers.get("idempotency-key"),
        default_channel=runtime.settings.slack_default_channel,
        request=JobRequest(
            training_dataset_id=body.training_file, validation_dataset_id=body.validation_file,
            base_model=body.model, backend=backend, method=method, suffix=body.suffix,
            hyperparameters=_hyperparameters(body, method, backend)))
    runtime.wake_poll()
    return shapes.job_object(created.job)


@router.get("/fine_tuning/jobs")
def list_fine_tuning_jobs(runtime: RuntimeDep, _: ReadKey, after: str | None = None,
                          limit: Annotated[int, Query(ge=1, le=100)] = 20) -> dict[str, Any]:
    rows, next_cursor = jobs.list_jobs(db=runtime.db, limit=limit, cursor=after)
    return shapes.page([shapes.job_object(r) for r in rows], next_cursor is not None)


@router.get("/fine_tuning/jobs/{job_id}")
def retrieve_fine_tuning_job(job_id: str, runtime: RuntimeDep, _: ReadKey) -> dict[str, Any]:
    return shapes.job_object(jobs.get_job(db=runtime.db, job_id=job_id))


@router.post("/fine_tuning/jobs/{job_id}/cancel")
def cancel_fine_tuning_job(job_id: str, request: Request, runtime: RuntimeDep,
                           key: JobCancelKey) -> dict[str, Any]:
    job = jobs.cancel_job(db=runtime.db, clock=runtime.clock, job_id=job_id,
                          actor=actor_for(key, request))
    runtime.wake_poll()
    return shapes.job_object(job)


@router.post("/fine_tuning/jobs/{job_id}/pause")
async def pause_fine_tuning_job(job_id: str, request: Request, runtime: RuntimeDep,
                                key: JobCancelKey) -> dict[str, Any]:
    job = await pausing.pause_job(db=runtime.db, poller=runtime.poller,
                                  clock=runtime.clock, job_id=job_id,
                                  actor=actor_for(key, request))
    return shapes.job_object(job)


@router.post("/fine_tuning/jobs/{job_id}/resume")
async def resume_fine_tuning_job(job_id: str, request: Request, runtime: RuntimeDep,
                                 key: JobCancelKey) -> dict[str, Any]:
    job = await pausing.resume_job(db=runtime.db, poller=runtime.poller,
                                   clock=runtime.clock, job_id=job_id,
                                   actor=actor_for(key, request))
    runtime.wake_poll()
    return shapes.job_object(job)


@router.get("/fine_tuning/jobs/{job_id}/events")
def list_fine_tuning_events(job_id: str, runtime: RuntimeDep, _: ReadKey,
                            after: str | None = None,
                            limit: Annotated[int, Query(ge=1, le=100)] = 20) -> dict[str, Any]:
    """Newest first, as the API lists them; `after` is the last event id the client saw."""
    events = jobs.job_events(db=runtime.db, job_id=job_id, after_id=None, limit=100_000)
    newest_first = list(reversed(events))
    if after is not None:
        before = int(after.removeprefix("ftevent-")) if after.removeprefix(
            "ftevent-").isdigit() else 0
        newest_first = [e for e in newest_first if (e.id or 0) < before]
    chunk = newest_first[:limit]
    return shapes.page([shapes.event_object(e) for e in chunk], len(newest_first) > limit)


@router.get("/fine_tuning/jobs/{job_id}/checkpoints")
def list_fine_tuning_checkpoints(job_id: str, runtime: RuntimeDep, _: ReadKey
                                 ) -> dict[str, Any]:
    job = jobs.get_job(db=runtime.db, job_id=job_id)
    checkpoints = (job.result or {}).get("checkpoints") or []
    items = [c for c in checkpoints if isinstance(c, dict)]
    return shapes.page(items, False)
