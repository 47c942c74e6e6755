"""Job use cases: create, read, list, cancel. Keyword-only, returning domain rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session

from backends.registry import BackendRegistry
from storage.blobs import BlobStore
from storage.database import Database
from storage.repositories.audit import AuditRepository
from storage.repositories.datasets import DatasetRepository
from storage.repositories.events import JobEventRepository
from storage.repositories.jobs import JobRepository
from storage.repositories.metrics import MetricRepository
from storage.tables import AuditLog, Dataset, Job, JobEvent, MetricPoint
from tunebridge import datasets, hyperparameters, runaway, validation
from tunebridge.assessment import JobPolicy, assess
from tunebridge.clock import Clock, new_id
from tunebridge.errors import Conflict, InvalidInput, NotFound, Problem
from tunebridge.lifecycle import apply_transition, record_creation
from tunebridge.mixing import GeneralMix
from tunebridge.status import JobStatus

METHOD_FORMATS = {
    "sft": {validation.CHAT, validation.PROMPT_COMPLETION, validation.TEXT},
    "dpo": {validation.PREFERENCE, validation.PREFERENCE_OPENAI},
}


@dataclass(frozen=True)
class JobRequest:
    training_dataset_id: str
    base_model: str
    backend: str
    method: str = "sft"
    validation_dataset_id: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    suffix: str | None = None
    notify_channel: str | None = None
    general_mix: GeneralMix | None = None  # forgetting guard: train on task + general data


@dataclass(frozen=True)
class CreatedJob:
    job: Job
    warnings: list[Problem]


@dataclass(frozen=True)
class Actor:
    """Who asked, and from where: the audit trail's subject."""

    name: str
    source: str  # http | slack | cli | scheduler
    remote: str | None = None


def _dataset(session: Session, dataset_id: str, method: str, field_name: str) -> Dataset:
    dataset = DatasetRepository(session).get(dataset_id)
    if dataset is None:
        raise NotFound("dataset", dataset_id)
    if dataset.format not in METHOD_FORMATS[method]:
        raise InvalidInput(
            "dataset_format_mismatch",
            f"Dataset {dataset_id} is {dataset.format}; method {method!r} needs one of "
            f"{sorted(METHOD_FORMATS[method])}.",
            [Problem("dataset_format_mismatch", "Wrong data format for this method.",
                     field=field_name)],
        )
    return dataset


def _check_request(request: JobRequest, registry: BackendRegistry) -> None:
    if request.method not in METHOD_FORMATS:
        raise InvalidInput("invalid_method", f"Method must be one of {sorted(METHOD_FORMATS)}.",
                           [Problem("invalid_method", "Unknown method.", field="method")])
    if request.backend not in registry:
        raise InvalidInput(
            "unknown_backend",
            f"Backend {request.backend!r} is not configured; available: {registry.names()}.",
            [Problem("unknown_backend", "Unknown backend.", field="backend")],
        )
    problems = runaway.option_problems(request.options)
    if problems:
        raise InvalidInput("invalid_options", "Some job options are unusable.", problems)


def _datasets(db: Database, request: JobRequest) -> tuple[Dataset, Dataset | None]:
    with db.session() as session:
        training = _dataset(session, request.training_dataset_id, request.method,
                            "training_dataset_id")
        validation = None
        if request.validation_dataset_id:
            validation = _dataset(session, request.validation_dataset_id, request.method,
                                  "validation_dataset_id")
    return training, validation


def _mixed(db: Database, blobs: BlobStore | None, clock: Clock, request: JobRequest,
           training: Dataset, creator: str) -> tuple[Dataset, dict[str, Any] | None]:
    """The dataset to train on: the training set, or its mix with general data (stored as a
    dataset of its own, so the job record points at exactly what was trained)."""
    mix = request.general_mix
    if mix is None and "general_mix" in request.options:  # the same request, as a job option
        try:
            mix = GeneralMix.from_value(request.options["general_mix"])
        except ValueError as exc:
            raise InvalidInput("invalid_general_mix", f"{exc}.", [Problem(
                "invalid_general_mix", f"{exc}.", field="options.general_mix")]) from None
    if mix is None:
        return training, None
    if blobs is None:
        raise InvalidInput("general_mix_unavailable", "This entry point cannot mix datasets.")
    mixed = datasets.mix_general_dataset(
        db=db, blobs=blobs, clock=clock, task=training, mix=mix, creator=creator,
        limits=datasets.ValidationLimits())
    return mixed.dataset, mixed.details


def create_job(
    *, db: Database, registry: BackendRegistry, clock: Clock, policy: JobPolicy,
    request: JobRequest, creator: str, idempotency_key: str | None = None,
    default_channel: str | None = None, blobs: BlobStore | None = None,
) -> CreatedJob:
    """Check everything a user can fix before anything is stored; then queue the job, or park
    it awaiting approval when its estimate is over a configured cap. With `general_mix`, the
    job trains on a stored mix of its training set and general data (needs `blobs`)."""
    _check_request(request, registry)
    resolved = hyperparameters.resolve(
        method=request.method, backend=request.backend, given=request.hyperparameters)
    training, validation = _datasets(db, request)
    training, mix = _mixed(db, blobs, clock, request, training, creator)
    assessment = assess(
        policy=policy, backend=request.backend, base_model=request.base_model,
        epochs=int(resolved.values.get("n_epochs", 1)), training=Path(training.blob_path),
        validation=Path(validation.blob_path) if validation else None)
    warnings = resolved.warnings + assessment.warnings
    status = JobStatus.AWAITING_APPROVAL if assessment.approval_reasons else JobStatus.QUEUED
    now = clock.now()
    with db.session() as session:
        job = JobRepository(session).add(Job(
            id=new_id("job"), backend=request.backend, base_model=request.base_model,
            method=request.method, status=status, training_dataset_id=training.id,
            validation_dataset_id=validation.id if validation else None,
            hyperparameters=resolved.values,
            options=dict(request.options) | ({"general_mix": mix} if mix else {}),
            suffix=request.suffix, creator=creator, estimate=assessment.estimate,
            slack_channel=request.notify_channel or default_channel,
            idempotency_key=idempotency_key, created_at=now, updated_at=now,
        ))
        record_creation(session, job, now=now, actor=creator,
                        reasons=list(assessment.approval_reasons))
        events = JobEventRepository(session)
        if mix:
            events.add(JobEvent(job_id=job.id, kind="dataset", level="info", data=mix,
                                created_at=now, message=_mix_message(mix)))
        for warning in warnings:
            events.add(JobEvent(job_id=job.id, kind="lint", level="warning",
                                message=warning.message, data=warning.as_dict(), created_at=now))
    return CreatedJob(job=job, warnings=warnings)


def _mix_message(mix: dict[str, Any]) -> str:
    return (f"Training on {mix['mixed_dataset_id']}: {mix['task_examples']} examples of "
            f"{mix['task_dataset_id']} mixed with {mix['general_examples']} general examples of "
            f"{mix['general_dataset_id']} (fraction {mix['fraction']:g}, seed {mix['seed']}).")


def approve_job(*, db: Database, clock: Clock, job_id: str, actor: Actor) -> Job:
    """Release a job held by a cost or GPU-time cap; audited like a cancel."""
    now = clock.now()
    with db.session() as session:
        job = JobRepository(session).get(job_id, for_update=True)
        if job is None:
            raise NotFound("job", job_id)
        apply_transition(session, job, JobStatus.QUEUED, now=now,
                         reason=f"approved by {actor.name}")
        _audit(session, actor, job_id, "approve", {"estimate": job.estimate}, now)
        return job


def get_job(*, db: Database, job_id: str) -> Job:
    with db.session() as session:
        job = JobRepository(session).get(job_id)
    if job is None:
        raise NotFound("job", job_id)
    return job


def list_jobs(
    *, db: Database, limit: int, cursor: str | None = None, statuses: Sequence[str] = (),
    backend: str | None = None, creator: str | None = None,
) -> tuple[list[Job], str | None]:
    """A page, newest first, and the cursor for the next page (None at the end)."""
    bad = [s for s in statuses if s not in JobStatus.__members__.values()]
    if bad:
        raise InvalidInput("invalid_status", f"Unknown status filter: {', '.join(bad)}.")
    with db.session() as session:
        rows = JobRepository(session).page(
            limit=limit + 1, before_id=cursor, statuses=statuses, backend=backend,
            creator=creator)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


def cancel_job(*, db: Database, clock: Clock, job_id: str, actor: Actor) -> Job:
    """Cancel now if nothing was submitted; else mark `cancelling` for the poller to finish.

    Every attempt is audited, refused ones too, so on-call can see who tried what.
    """
    now = clock.now()
    try:
        with db.session() as session:
            job = JobRepository(session).get(job_id, for_update=True)
            if job is None:
                raise NotFound("job", job_id)
            if job.status == JobStatus.CANCELLING:
                raise Conflict("already_cancelling", f"Job {job_id} is already being cancelled.",
                               details={"job_id": job_id, "status": job.status})
            target = JobStatus.CANCELLING if job.handle else JobStatus.CANCELLED
            job.next_poll_at = None  # the poller forwards the cancel on its next tick
            apply_transition(session, job, target, now=now, reason=f"requested by {actor.name}")
            _audit(session, actor, job_id, "cancel", {"outcome": str(target)}, now)
            return job
    except Conflict as refused:
        with db.session() as session:
            _audit(session, actor, job_id, "cancel", {"outcome": "refused", "code": refused.code},
                   now)
        raise


def _audit(session: Session, actor: Actor, job_id: str, action: str, detail: dict[str, Any],
           now: Any) -> None:
    AuditRepository(session).add(AuditLog(
        actor=actor.name, action=action, job_id=job_id, source=actor.source, remote=actor.remote,
        detail=detail, created_at=now))


def job_events(*, db: Database, job_id: str, after_id: int | None, limit: int) -> list[JobEvent]:
    with db.session() as session:
        if JobRepository(session).get(job_id) is None:
            raise NotFound("job", job_id)
        return JobEventRepository(session).page(job_id, after_id=after_id, limit=limit)


def job_metrics(*, db: Database, job_id: str, after_step: int | None, limit: int
                ) -> list[MetricPoint]:
    with db.session() as session:
        if JobRepository(session).get(job_id) is None:
            raise NotFound("job", job_id)
        return MetricRepository(session).page(job_id, after_step=after_step, limit=limit)
