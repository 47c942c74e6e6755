"""Our rows in the OpenAI API's object shapes, so the unchanged OpenAI SDK can talk to us."""

from __future__ import annotations

from typing import Any

from storage.tables import Dataset, Job, JobEvent
from tunebridge.errors import TunebridgeError

STATUS = {
    "validating": "validating_files", "awaiting_approval": "queued", "queued": "queued",
    "running": "running", "paused": "paused", "cancelling": "running",
    "succeeded": "succeeded", "failed": "failed", "cancelled": "cancelled",
}
ERROR_TYPE = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error",
              409: "invalid_request_error", 413: "invalid_request_error",
              422: "invalid_request_error", 503: "server_error"}


def error_body(error: TunebridgeError, status: int) -> dict[str, Any]:
    first = error.problems[0] if error.problems else None
    message = error.message
    if error.problems:
        located = [f"line {p.line}: {p.message}" if p.line else p.message
                   for p in error.problems[:10]]
        message = f"{message} " + " ".join(located)
    return {"error": {"message": message, "type": ERROR_TYPE.get(status, "invalid_request_error"),
                      "param": first.field if first else None, "code": error.code}}


def file_object(dataset: Dataset) -> dict[str, Any]:
    return {"id": dataset.id, "object": "file", "bytes": dataset.size_bytes,
            "created_at": int(dataset.created_at.timestamp()), "filename": dataset.filename,
            "purpose": "fine-tune", "status": "processed", "status_details": None}


def job_object(job: Job) -> dict[str, Any]:
    result = job.result or {}
    hyper = {k: job.hyperparameters[k] for k in ("n_epochs", "batch_size",
             "learning_rate_multiplier") if k in job.hyperparameters}
    method_type = "dpo" if job.method == "dpo" else "supervised"
    error = None
    if job.error:
        error = {"code": str(job.error.get("code", "failed")),
                 "message": str(job.error.get("message", job.error)), "param": None}
    return {
        "id": job.id, "object": "fine_tuning.job", "model": job.base_model,
        "created_at": int(job.created_at.timestamp()),
        "finished_at": int(job.finished_at.timestamp()) if job.finished_at else None,
        "fine_tuned_model": result.get("fine_tuned_model") or result.get("adapter_path"),
        "organization_id": "org-tunebridge", "result_files": result.get("result_files", []),
        "status": STATUS[job.status], "validation_file": job.validation_dataset_id,
        "training_file": job.training_dataset_id, "hyperparameters": hyper,
        "trained_tokens": result.get("trained_tokens"), "error": error,
        "seed": job.hyperparameters.get("seed", 0), "estimated_finish": None,
        "integrations": [], "user_provided_suffix": job.suffix,
        "metadata": {"backend": job.backend},
        "method": {"type": method_type, method_type: {"hyperparameters": hyper}},
    }


def event_object(event: JobEvent) -> dict[str, Any]:
    return {"id": f"ftevent-{event.id}", "object": "fine_tuning.job.event",
            "created_at": int(event.created_at.timestamp()),
            "level": event.level if event.level in ("info", "warn", "error") else (
                "warn" if event.level == "warning" else "info"),
            "message": event.message, "data": event.data or {}, "type": "message"}


def page(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": items, "has_more": has_more}
