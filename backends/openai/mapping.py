"""Pure translations between tunebridge's backend types and OpenAI's fine-tuning objects.

Kept free of I/O so the rules (which hyperparameters go where, which status means what, which
event fields become which metric) are readable in one place and testable without a server.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

from backends.base import BackendEvent, JobSpec, MetricSample, RemoteStatus

JOB_ID_METADATA_KEY = "tunebridge_job_id"
# On every job we create, so one list request (filtered by it) reads many of our jobs' status.
OWNER_METADATA: Mapping[str, str] = {"created_by": "tunebridge"}

STATUS_MAP: Mapping[str, RemoteStatus] = {
    "validating_files": RemoteStatus.QUEUED,
    "queued": RemoteStatus.QUEUED,
    "running": RemoteStatus.RUNNING,
    "paused": RemoteStatus.PAUSED,
    "succeeded": RemoteStatus.SUCCEEDED,
    "failed": RemoteStatus.FAILED,
    "cancelled": RemoteStatus.CANCELLED,
}
TERMINAL = {RemoteStatus.SUCCEEDED, RemoteStatus.FAILED, RemoteStatus.CANCELLED}

# Which of the services' hyperparameters OpenAI accepts, per method; others (e.g. LoRA rank)
# belong to the local backend and would make the API answer 400.
METHOD_KEYS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "sft": ("supervised", ("n_epochs", "batch_size", "learning_rate_multiplier")),
    "dpo": ("dpo", ("n_epochs", "batch_size", "learning_rate_multiplier", "beta")),
}

# metrics event data key → MetricSample field; anything else numeric lands in `extra`.
METRIC_FIELDS: Mapping[str, str] = {
    "train_loss": "train_loss",
    "valid_loss": "eval_loss",
    "train_mean_token_accuracy": "token_accuracy",
    "valid_mean_token_accuracy": "eval_token_accuracy",
}


class UnsupportedMethod(ValueError):
    pass


def method_payload(spec: JobSpec) -> dict[str, Any]:
    """`method={"type": "supervised"|"dpo", <type>: {"hyperparameters": {...}}}`."""
    if spec.method not in METHOD_KEYS:
        raise UnsupportedMethod(f"OpenAI fine-tuning supports sft and dpo, not {spec.method!r}")
    kind, keys = METHOD_KEYS[spec.method]
    hyper = {k: spec.hyperparameters[k] for k in keys if spec.hyperparameters.get(k) is not None}
    return {"type": kind, kind: {"hyperparameters": hyper}}


def create_params(spec: JobSpec, training_file: str, validation_file: str | None) -> dict[str, Any]:
    """Keyword arguments for `fine_tuning.jobs.create`; metadata carries our id for adoption."""
    params: dict[str, Any] = {
        "model": spec.base_model,
        "training_file": training_file,
        "method": method_payload(spec),
        "metadata": job_metadata(spec.job_id),
    }
    if validation_file is not None:
        params["validation_file"] = validation_file
    if spec.suffix:
        params["suffix"] = spec.suffix
    if spec.seed is not None:
        params["seed"] = spec.seed
    return params


def job_metadata(job_id: str) -> dict[str, str]:
    """Our id (for adoption after a crash) and the owner mark (for listing our jobs)."""
    return {JOB_ID_METADATA_KEY: job_id, **OWNER_METADATA}


def remote_status(status: str) -> RemoteStatus | None:
    return STATUS_MAP.get(status)


def job_error(job: FineTuningJob) -> dict[str, Any]:
    """The provider's own error object, or a generic one when a failed job carries none."""
    if job.error is not None:
        return {"code": job.error.code, "message": job.error.message, "param": job.error.param}
    return {"code": "unknown", "message": "OpenAI reported the job failed without details"}


def job_result(job: FineTuningJob, checkpoints: list[FineTuningJobCheckpoint]) -> dict[str, Any]:
    """What a succeeded job leaves behind, JSON-ready; checkpoints ordered by step."""
    ordered = sorted(checkpoints, key=lambda c: c.step_number)
    return {
        "fine_tuned_model": job.fine_tuned_model,
        "result_files": list(job.result_files),
        "trained_tokens": job.trained_tokens,
        "checkpoints": [
            {
                "id": c.id,
                "step": c.step_number,
                "fine_tuned_model_checkpoint": c.fine_tuned_model_checkpoint,
                "metrics": c.metrics.model_dump(exclude_none=True),
            }
            for c in ordered
        ],
    }


def job_epochs(job: FineTuningJob) -> int | None:
    """The job's resolved epoch count, from the top level or from its method's hyperparameters."""
    candidates: list[Any] = [job.hyperparameters.n_epochs if job.hyperparameters else None]
    if job.method is not None:
        for settings in (job.method.supervised, job.method.dpo):
            if settings is not None and settings.hyperparameters is not None:
                candidates.append(settings.hyperparameters.n_epochs)
    return next((c for c in candidates if isinstance(c, int) and not isinstance(c, bool)), None)


def is_metrics_event(event: FineTuningJobEvent) -> bool:
    data = event.data if isinstance(event.data, Mapping) else {}
    return event.type == "metrics" or (event.type is None and "train_loss" in data)


def metric_sample(event: FineTuningJobEvent, n_epochs: int | None) -> MetricSample | None:
    """A `metrics` event as a MetricSample; the epoch is derived when the job's epochs are known."""
    data = event.data if isinstance(event.data, Mapping) else {}
    step = data.get("step")
    if not isinstance(step, int | float):
        return None
    fields: dict[str, Any] = {}
    extra: dict[str, float] = {}
    for key, value in data.items():
        if key == "step" or not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if key in METRIC_FIELDS:
            fields[METRIC_FIELDS[key]] = float(value)
        else:
            extra[key] = float(value)
    total = data.get("total_steps")
    if n_epochs and isinstance(total, int | float) and total > 0:
        fields["epoch"] = round(step / total * n_epochs, 4)
    return MetricSample(step=int(step), extra=extra, **fields)


def backend_event(event: FineTuningJobEvent) -> BackendEvent:
    data = event.data if isinstance(event.data, Mapping) else {}
    return BackendEvent(
        event_id=event.id,
        message=event.message,
        level=event.level,
        created_at=datetime.fromtimestamp(event.created_at, tz=UTC),
        data=dict(data),
    )
