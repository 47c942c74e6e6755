"""The status card: the first message of a job's thread, edited in place as the job moves."""

from __future__ import annotations

from typing import Any

from bot.blocks.text import (
    BUTTON_TEXT,
    clip,
    context,
    escape,
    fields,
    number,
    plain,
    section,
    user_ref,
)
from storage.tables import Job
from tunebridge.progress import JobSnapshot, Progress, duration_text
from tunebridge.status import JobStatus

CANCEL_ACTION = "cancel_job"
DETAILS_ACTION = "job_details"
APPROVE_ACTION = "approve_job"
STATUS_EMOJI = {
    "validating": ":mag:", "awaiting_approval": ":raised_hand:",
    "queued": ":hourglass_flowing_sand:", "running": ":arrows_counterclockwise:",
    "paused": ":double_vertical_bar:", "cancelling": ":octagonal_sign:",
    "succeeded": ":white_check_mark:", "failed": ":x:", "cancelled": ":no_entry_sign:",
}


def status_label(status: str) -> str:
    return f"{STATUS_EMOJI.get(str(status), '')} {status}".strip()


def progress_bar(fraction: float | None, width: int = 20) -> str:
    if fraction is None:
        return "`" + "░" * width + "`  —"
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "`" + "█" * filled + "░" * (width - filled) + f"`  {fraction:.0%}"


def position(progress: Progress) -> str:
    parts = []
    if progress.step is not None:
        total = f"/{progress.total_steps}" if progress.total_steps else ""
        parts.append(f"step {progress.step}{total}")
    if progress.epoch is not None:
        total = f"/{progress.total_epochs:g}" if progress.total_epochs else ""
        parts.append(f"epoch {progress.epoch:.2f}{total}")
    return " · ".join(parts) or "not started"


def estimate_text(estimate: dict[str, Any] | None) -> str:
    """The job's estimate: money for OpenAI, device time for local training."""
    if not estimate:
        return "—"
    parts = []
    cost = estimate.get("cost") or {}
    gpu = estimate.get("gpu_time") or {}
    if cost.get("billed_tokens"):
        parts.append(f"{cost['billed_tokens']:,} tokens")
    if cost.get("cost_usd") is not None:
        parts.append(f"${cost['cost_usd']:,.2f}")
    if gpu.get("gpu_hours") is not None:
        parts.append(f"{gpu['gpu_hours']:.2f} GPU-h on {gpu.get('device', '?')}")
    return " · ".join(parts) or "—"


def _losses(progress: Progress) -> str:
    val = number(progress.eval_loss)
    if progress.best_eval_loss is not None:
        val += f" (best {progress.best_eval_loss:.4f} @ step {progress.best_eval_step})"
    return f"train {number(progress.train_loss)}\nval {val}"


def _outcome(job: Job) -> str | None:
    if job.result:
        model = job.result.get("model") or job.result.get("fine_tuned_model")
        return f"Result: `{escape(str(model))}`" if model else None
    if job.error:
        return f"Error: {escape(str(job.error.get('message') or job.error))}"
    return None


def card(snapshot: JobSnapshot) -> tuple[str, list[dict[str, Any]]]:
    """Fallback text and blocks; built from the job's current state, so any edit is complete."""
    job, progress = snapshot.job, snapshot.progress
    eta = duration_text(progress.eta_s) if progress.eta_s is not None else "—"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain(f"Fine-tune {job.id}")},
        fields([("Status", status_label(job.status)), ("Creator", user_ref(job.creator)),
                ("Backend", escape(job.backend)), ("Model", escape(job.base_model)),
                ("Method", job.method), ("Estimate", estimate_text(job.estimate))]),
        section(f"{progress_bar(progress.fraction)}\n{position(progress)}"),
        fields([("Latest loss", _losses(progress)), ("ETA", eta)]),
    ]
    outcome = _outcome(job)
    if outcome:
        blocks.append(context(outcome))
    blocks.append(actions(job))
    text = f"{job.id} ({job.backend}, {job.base_model}): {job.status}, {position(progress)}"
    return clip(text, 300), blocks


def actions(job: Job) -> dict[str, Any]:
    buttons: list[dict[str, Any]] = [{
        "type": "button", "action_id": DETAILS_ACTION, "value": job.id,
        "text": plain("Details", BUTTON_TEXT)}]
    if JobStatus(job.status).is_active and job.status != JobStatus.CANCELLING:
        buttons.insert(0, {
            "type": "button", "action_id": CANCEL_ACTION, "value": job.id, "style": "danger",
            "text": plain("Cancel", BUTTON_TEXT),
            "confirm": {
                "title": plain("Cancel this job?", 100),
                "text": plain(clip(f"{job.id} on {job.backend} will be stopped. "
                                   "This cannot be undone.", 300), 300),
                "confirm": plain("Cancel job", 30), "deny": plain("Keep running", 30),
                "style": "danger"}})
    if job.status == JobStatus.AWAITING_APPROVAL:
        buttons.insert(0, {
            "type": "button", "action_id": APPROVE_ACTION, "value": job.id, "style": "primary",
            "text": plain("Approve", BUTTON_TEXT),
            "confirm": {
                "title": plain("Approve this job?", 100),
                "text": plain(clip(f"{job.id} is over a cost or GPU-time cap: "
                                   f"{estimate_text(job.estimate)}", 300), 300),
                "confirm": plain("Approve", 30), "deny": plain("Not yet", 30)}})
    return {"type": "actions", "block_id": f"job:{job.id}", "elements": buttons}
