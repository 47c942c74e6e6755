"""A job's completion summary (final and best losses, best step, findings) and its loss chart."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from gateway.dependencies import ReadKey, RuntimeDep
from tunebridge import completion_summary
from tunebridge.errors import NotFound

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


class SummaryPublic(BaseModel):
    """What `completion_summary` posts when the job finishes; for a running job, so far."""

    job_id: str
    status: str
    final_step: int | None
    final_train_loss: float | None
    best_train_loss: float | None
    best_train_step: int | None
    final_eval_loss: float | None
    best_eval_loss: float | None
    best_eval_step: int | None
    best_eval_epoch: float | None
    nonfinite_loss_step: int | None
    best_checkpoint: str | None
    findings: list[dict[str, Any]]
    text: str


@router.get("/{job_id}/summary", response_model=SummaryPublic)
def job_summary(job_id: str, runtime: RuntimeDep, _: ReadKey) -> SummaryPublic:
    summary = completion_summary.for_job(db=runtime.db, job_id=job_id)
    return SummaryPublic(**summary.as_dict(), text=summary.text())


@router.get("/{job_id}/summary/chart.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
async def job_summary_chart(job_id: str, runtime: RuntimeDep, _: ReadKey) -> Response:
    """The loss chart as PNG (drawn on request, off the event loop); 404 before any loss."""
    png = await run_in_threadpool(completion_summary.chart_png, db=runtime.db, job_id=job_id)
    if png is None:
        raise NotFound("loss_chart", job_id)
    return Response(content=png, media_type="image/png")
