"""The completion summary: how a finished run's losses ended, its best step, what was found.

`summarize` is pure (a job, its series and its events in; numbers out) so tests pin it; `queue`
posts it once, in the transaction that moved the job to succeeded/failed/cancelled (the outbox
dedupe key is per job); `for_job` and `chart_png` serve it over HTTP and to notifiers. The chart
itself is drawn on delivery, never inside the poll's transaction.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from storage.database import Database
from storage.repositories.events import JobEventRepository
from storage.repositories.jobs import JobRepository
from storage.repositories.metrics import MetricRepository
from storage.tables import Job, JobEvent
from tunebridge import health_watch
from tunebridge.errors import NotFound
from tunebridge.health import MetricSeries
from tunebridge.lifecycle import notify
from tunebridge.loss_chart import loss_chart
from tunebridge.progress import MAX_POINTS
from tunebridge.status import JobStatus

KIND = "completion_summary"
FINDING_EVENTS = ("health", "runaway")


@dataclass(frozen=True)
class CompletionSummary:
    job_id: str
    status: str
    final_step: int | None = None
    final_train_loss: float | None = None  # None also when the last logged value is NaN/inf
    best_train_loss: float | None = None
    best_train_step: int | None = None
    final_eval_loss: float | None = None
    best_eval_loss: float | None = None
    best_eval_step: int | None = None  # the checkpoint to keep (earliest on ties)
    best_eval_epoch: float | None = None
    nonfinite_loss_step: int | None = None  # first step whose train loss was NaN/inf
    best_checkpoint: str | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        """One paragraph for a thread or a console."""
        parts = [f"Job {self.job_id} {self.status}"]
        if self.final_step is not None:
            parts.append(f"after step {self.final_step}")
        lines = [" ".join(parts) + "."]
        if self.final_train_loss is not None or self.best_train_loss is not None:
            lines.append(f"Train loss: final {_num(self.final_train_loss)}, best "
                         f"{_num(self.best_train_loss)} at step {self.best_train_step}.")
        if self.nonfinite_loss_step is not None:
            lines.append(f"Train loss became NaN/inf at step {self.nonfinite_loss_step}.")
        if self.best_eval_loss is not None:
            keep = f" (keep {self.best_checkpoint})" if self.best_checkpoint else ""
            lines.append(f"Validation loss: final {_num(self.final_eval_loss)}, best "
                         f"{_num(self.best_eval_loss)} at step {self.best_eval_step}{keep}.")
        found = ", ".join(f"{f['kind']} (step {f['step']})" if f.get("step") is not None
                          else str(f["kind"]) for f in self.findings)
        lines.append(f"Findings: {found}." if found else "Findings: none.")
        return " ".join(lines)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def summarize(job: Job, series: MetricSeries, events: list[JobEvent]) -> CompletionSummary:
    train = series.column("train_loss")
    train_finite = [(s, v) for s, v in train if math.isfinite(v)]
    evals = series.finite("eval_loss")
    best_train = min(train_finite, key=lambda pair: (pair[1], pair[0]), default=None)
    best_eval = min(evals, key=lambda pair: (pair[1], pair[0]), default=None)
    final_train = train[-1][1] if train else None
    return CompletionSummary(
        job_id=job.id, status=str(job.status),
        final_step=series.points[-1].step if series.points else None,
        final_train_loss=final_train if final_train is not None and math.isfinite(final_train)
        else None,
        best_train_loss=best_train[1] if best_train else None,
        best_train_step=best_train[0] if best_train else None,
        final_eval_loss=evals[-1][1] if evals else None,
        best_eval_loss=best_eval[1] if best_eval else None,
        best_eval_step=best_eval[0] if best_eval else None,
        best_eval_epoch=series.epoch_at(best_eval[0]) if best_eval else None,
        nonfinite_loss_step=next((s for s, v in train if not math.isfinite(v)), None),
        best_checkpoint=_checkpoint(job, best_eval[0] if best_eval else None),
        findings=_findings(events))


def _findings(events: list[JobEvent]) -> list[dict[str, Any]]:
    found = []
    for event in events:
        data = event.data or {}
        if event.kind not in FINDING_EVENTS or "kind" not in data:
            continue  # e.g. a runaway limit that could not be checked
        found.append({"source": event.kind, "kind": data["kind"], "step": data.get("step"),
                      "severity": data.get("severity") or event.level,
                      "message": event.message})
    return found


def _checkpoint(job: Job, best_step: int | None) -> str | None:
    """What to keep: the local trainer's best checkpoint, or OpenAI's checkpoint at the best
    step."""
    result = job.result or {}
    if isinstance(result.get("best_checkpoint"), str):
        return str(result["best_checkpoint"])
    for checkpoint in result.get("checkpoints") or []:
        if isinstance(checkpoint, dict) and checkpoint.get("step") == best_step:
            name = checkpoint.get("fine_tuned_model_checkpoint") or checkpoint.get("id")
            return str(name) if name else None
    return None


def _load(session: Session, job: Job, series: MetricSeries | None = None) -> CompletionSummary:
    events = JobEventRepository(session).page(job.id, after_id=None, limit=10_000)
    if series is None:
        series = health_watch.series_for(session, job)
    return summarize(job, series, events)


def queue(session: Session, job: Job, *, now: datetime, series: MetricSeries | None = None
          ) -> None:
    """Post the summary once when the job has just finished (no-op otherwise). `series`: the
    job's stored series when the caller has it already (the poll's health assessment), so the
    transaction holding the job's lock does not read it again."""
    if not JobStatus(job.status).is_terminal:
        return
    summary = _load(session, job, series)
    notify(session, job, kind=KIND, dedupe_key=f"{job.id}:{KIND}", text=summary.text(),
           now=now, data=summary.as_dict())


def for_job(*, db: Database, job_id: str) -> CompletionSummary:
    """The summary as it stands (final once the job has finished)."""
    with db.session() as session:
        job = JobRepository(session).get(job_id)
        if job is None:
            raise NotFound("job", job_id)
        return _load(session, job)


def chart_png(*, db: Database, job_id: str) -> bytes | None:
    """The loss chart as PNG; None when the job logged no losses."""
    with db.session() as session:
        job = JobRepository(session).get(job_id)
        if job is None:
            raise NotFound("job", job_id)
        points = MetricRepository(session).page(job_id, after_step=None, limit=MAX_POINTS)
    return loss_chart(points, title=f"{job.id} · {job.base_model}")
