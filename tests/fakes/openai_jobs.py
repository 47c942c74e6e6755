"""Simulated fine-tuning jobs on a clock the test drives.

One `tick` moves a job one unit: validating_files → queued → running → one training step per
tick (a `metrics` event each, a checkpoint at every epoch end) → succeeded. Tests call
`advance(job_id, ticks)` instead of sleeping, so a whole job runs in microseconds. Objects follow
`openai.types.fine_tuning` (FineTuningJob, FineTuningJobEvent, FineTuningJobCheckpoint).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.openai_world import ApiError, FileStore, page

TERMINAL = {"succeeded", "failed", "cancelled"}
HYPERPARAMETER_KEYS = ("n_epochs", "batch_size", "learning_rate_multiplier")


@dataclass
class SimJob:
    obj: dict[str, Any]
    total_steps: int
    steps_per_epoch: int
    events: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    checkpoints: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    step: int = 0
    fail_at_step: int | None = None


def loss_at(step: int) -> float:
    """A smoothly falling training loss, so health checks see a believable curve."""
    return round(2.4 * math.exp(-step / 6) + 0.3, 4)


class OpenAIWorld(FileStore):
    """Files, uploads and jobs of one fake organisation."""

    def __init__(self, *, steps_per_epoch: int = 4, default_epochs: int = 3, seed: int = 0):
        super().__init__(seed=seed)
        self.steps_per_epoch = steps_per_epoch
        self.default_epochs = default_epochs
        self.jobs: dict[str, SimJob] = {}

    # ----- API surface -------------------------------------------------------------------------
    def create_job(self, body: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            for name in ("model", "training_file"):
                if not body.get(name):
                    raise ApiError(400, f"Missing required parameter: '{name}'.", param=name)
            for name in ("training_file", "validation_file"):
                if body.get(name):
                    self._fine_tune_file(body[name], name)
            method = dict(body.get("method") or {"type": "supervised", "supervised": {}})
            hyper = self._hyperparameters(body, method)
            job_id = self.new_id("ftjob-")
            obj = {
                "object": "fine_tuning.job",
                "id": job_id,
                "model": body["model"],
                "created_at": self.now,
                "finished_at": None,
                "fine_tuned_model": None,
                "organization_id": self.org,
                "result_files": [],
                "status": "validating_files",
                "validation_file": body.get("validation_file"),
                "training_file": body["training_file"],
                "hyperparameters": hyper,
                "method": method,
                "trained_tokens": None,
                "integrations": [],
                "seed": body.get("seed") if body.get("seed") is not None else 42,
                "estimated_finish": None,
                "metadata": body.get("metadata"),
                "suffix": body.get("suffix"),
                "error": None,
            }
            epochs = hyper["n_epochs"] if isinstance(hyper["n_epochs"], int) else None
            total = (epochs or self.default_epochs) * self.steps_per_epoch
            job = SimJob(obj, total_steps=total, steps_per_epoch=self.steps_per_epoch)
            self.jobs[job_id] = job
            self._event(job, f"Created fine-tuning job: {job_id}")
            self._event(job, f"Validating training file: {body['training_file']}")
            return self._public(job)

    def get_job(self, job_id: str) -> dict[str, Any]:
        with self.lock:
            return self._public(self._job(job_id))

    def list_jobs(self, query: Mapping[str, str]) -> dict[str, Any]:
        """Newest first; `metadata[k]=v` filters, as the API reference documents; `limit` is
        1-100 (default 20). Only the page served is copied, so a list over many jobs is cheap."""
        prefix = "metadata["
        wanted = {k[len(prefix) : -1]: v for k, v in query.items() if k.startswith(prefix)}
        limit = int(query.get("limit", 20))
        if not 1 <= limit <= 100:
            raise ApiError(400, "limit must be between 1 and 100.", param="limit")
        with self.lock:
            matching = [
                job.obj
                for job in reversed(self.jobs.values())
                if all((job.obj["metadata"] or {}).get(k) == v for k, v in wanted.items())
            ]
            listed = page(matching, query.get("after"), limit)
            listed["data"] = [self._public(self.jobs[obj["id"]]) for obj in listed["data"]]
        return listed

    def list_events(self, job_id: str, query: Mapping[str, str]) -> dict[str, Any]:
        with self.lock:
            events = list(reversed(self._job(job_id).events))
        return page(events, query.get("after"), min(int(query.get("limit", 20)), 100))

    def list_checkpoints(self, job_id: str, query: Mapping[str, str]) -> dict[str, Any]:
        with self.lock:
            checkpoints = list(reversed(self._job(job_id).checkpoints))
        return page(checkpoints, query.get("after"), int(query.get("limit", 10)))

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Cancelling a finished job is refused with a 400 (our reading of the API's behaviour)."""
        with self.lock:
            job = self._job(job_id)
            if job.obj["status"] in TERMINAL:
                raise ApiError(400, f"Job {job_id} has already {job.obj['status']}.")
            self._finish(job, "cancelled", "Fine-tuning job cancelled")
            return self._public(job)

    def pause_job(self, job_id: str) -> dict[str, Any]:
        return self._pause_or_resume(job_id, "running", "paused", "Fine-tuning job paused")

    def resume_job(self, job_id: str) -> dict[str, Any]:
        return self._pause_or_resume(job_id, "paused", "running", "Fine-tuning job resumed")

    # ----- the test's clock ----------------------------------------------------------------
    def advance(self, job_id: str, ticks: int = 1) -> str:
        """Move one job `ticks` units forward; returns its status afterwards."""
        with self.lock:
            job = self._job(job_id)
            for _ in range(ticks):
                self.now += 1
                self._tick(job)
            return str(job.obj["status"])

    def run_to_end(self, job_id: str) -> str:
        return self.advance(job_id, self._job(job_id).total_steps + 3)

    def fail_job(self, job_id: str, code: str, message: str, *, at_step: int | None = None) -> None:
        """Fail now, or when training reaches `at_step`, with the given provider error."""
        with self.lock:
            job = self._job(job_id)
            job.obj["error"] = {"code": code, "message": message, "param": None}
            if at_step is None:
                self._finish(job, "failed", message, level="error")
            else:
                job.fail_at_step = at_step

    def events_of(self, job_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(e) for e in self._job(job_id).events]

    # ----- internals -----------------------------------------------------------------------
    def _tick(self, job: SimJob) -> None:
        status = job.obj["status"]
        if status == "validating_files":
            job.obj["status"] = "queued"
            self._event(job, "Files validated, moving job to queued state")
        elif status == "queued":
            job.obj.update(status="running", estimated_finish=self.now + job.total_steps)
            self._resolve_auto(job)
            self._event(job, "Fine-tuning job started")
        elif status == "running" and job.step < job.total_steps:
            job.step += 1
            self._train_step(job)
            if job.fail_at_step == job.step:
                self._finish(job, "failed", job.obj["error"]["message"], level="error")
        elif status == "running":
            self._succeed(job)

    def _train_step(self, job: SimJob) -> None:
        step, total, has_valid = job.step, job.total_steps, bool(job.obj["validation_file"])
        data: dict[str, Any] = {
            "step": step,
            "train_loss": loss_at(step),
            "train_mean_token_accuracy": round(min(0.99, 0.4 + step / (2 * total)), 4),
            "total_steps": total,
        }
        message = f"Step {step}/{total}: training loss={data['train_loss']:.2f}"
        if has_valid:
            data.update(valid_loss=loss_at(step) + 0.1, valid_mean_token_accuracy=0.5)
            message += f", validation loss={data['valid_loss']:.2f}"
        if has_valid and step == total:
            data.update(full_valid_loss=loss_at(step) + 0.12, full_valid_mean_token_accuracy=0.5)
        self._event(job, message, kind="metrics", data=data)
        if step % job.steps_per_epoch == 0:
            self._checkpoint(job, data)

    def _checkpoint(self, job: SimJob, data: Mapping[str, Any]) -> None:
        metrics = {k: v for k, v in data.items() if k != "total_steps"}
        job.checkpoints.append(
            {
                "object": "fine_tuning.job.checkpoint",
                "id": self.new_id("ftckpt_"),
                "created_at": self.now,
                "fine_tuned_model_checkpoint": f"{self._model_name(job)}:ckpt-step-{job.step}",
                "fine_tuning_job_id": job.obj["id"],
                "metrics": metrics,
                "step_number": job.step,
            }
        )
        del job.checkpoints[:-3]  # the API keeps the last three epochs' checkpoints

    def _succeed(self, job: SimJob) -> None:
        csv = b"step,train_loss\n"
        results = self.create_file("step_metrics.csv", csv, "fine-tune-results", system=True)
        job.obj.update(
            fine_tuned_model=self._model_name(job),
            result_files=[results["id"]],
            trained_tokens=1000 * job.total_steps,
        )
        self._event(job, f"New fine-tuned model created: {job.obj['fine_tuned_model']}")
        self._finish(job, "succeeded", "The job has successfully completed")

    def _finish(self, job: SimJob, status: str, message: str, level: str = "info") -> None:
        job.obj.update(status=status, finished_at=self.now, estimated_finish=None)
        self._event(job, message, level=level)

    def _pause_or_resume(self, job_id: str, src: str, dst: str, message: str) -> dict[str, Any]:
        with self.lock:
            job = self._job(job_id)
            if job.obj["status"] != src:
                raise ApiError(400, f"Job {job_id} is {job.obj['status']}, not {src}.")
            job.obj["status"] = dst
            self._event(job, message)
            return self._public(job)

    def _event(
        self,
        job: SimJob,
        message: str,
        *,
        kind: str = "message",
        level: str = "info",
        data: Mapping[str, Any] | None = None,
    ) -> None:
        job.events.append(
            {
                "object": "fine_tuning.job.event",
                "id": self.new_id("ftevent-"),
                "created_at": self.now,
                "level": level,
                "message": message,
                "data": dict(data or {}),
                "type": kind,
            }
        )

    def _hyperparameters(self, body: Mapping[str, Any], method: dict[str, Any]) -> dict[str, Any]:
        kind = method.get("type", "supervised")
        if kind not in ("supervised", "dpo", "reinforcement"):
            raise ApiError(400, f"Invalid method type: {kind!r}.", param="method.type")
        settings = dict(method.get(kind) or {})
        given = dict(settings.get("hyperparameters") or body.get("hyperparameters") or {})
        multiplier = given.get("learning_rate_multiplier", "auto")
        if multiplier != "auto" and not 0 < float(multiplier) <= 10:
            raise ApiError(400, "learning_rate_multiplier out of range.", param="hyperparameters")
        method[kind] = {**settings, "hyperparameters": given}
        return {key: given.get(key, "auto") for key in HYPERPARAMETER_KEYS}

    def _resolve_auto(self, job: SimJob) -> None:
        resolved = {
            "n_epochs": self.default_epochs,
            "batch_size": 1,
            "learning_rate_multiplier": 1.8,
        }
        hyper = job.obj["hyperparameters"]
        for key, value in resolved.items():
            if hyper[key] == "auto":
                hyper[key] = value

    def _model_name(self, job: SimJob) -> str:
        suffix = job.obj["suffix"] or ""
        return f"ft:{job.obj['model']}:{self.org}:{suffix}:{job.obj['id'][-8:]}"

    def _fine_tune_file(self, file_id: str, param: str) -> None:
        obj = self.files.get(file_id)
        if obj is None or obj["purpose"] != "fine-tune":
            raise ApiError(400, f"Invalid file ID: {file_id}", code="invalid_file", param=param)

    def _job(self, job_id: str) -> SimJob:
        if job_id not in self.jobs:
            raise ApiError(404, f"Could not find fine-tune job: {job_id}", param="fine_tune_id")
        return self.jobs[job_id]

    def _public(self, job: SimJob) -> dict[str, Any]:
        """The job as served; `suffix` is our bookkeeping, not a field of the API object."""
        return copy.deepcopy({k: v for k, v in job.obj.items() if k != "suffix"})
