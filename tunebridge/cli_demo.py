"""`tunebridge demo`: the whole local path in one command, offline, on a CPU, in a few minutes.

It goes through the same services a `serve` process uses, in this process: the SmolLM2 model is
installed the way `models add` installs it, the bundled sample is stored as an upload is, the job
is created and linted as the API creates it, and the real Poller drives the real LocalBackend
(a trainer subprocess) while metrics land in the database. Only the scheduler is replaced by a
loop that polls every second and draws a progress bar, so nothing here is a demo-only shortcut.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from storage.tables import Job, JobEvent, MetricPoint
from tunebridge.cli_support import fail
from tunebridge.settings import Settings

out = Console()
err = Console(stderr=True)

DEMO_MODEL = "smollm2-135m-instruct"
SAMPLE = "demo-chat.jsonl"
ACTOR = "cli:demo"
TERMINAL = {"succeeded", "failed", "cancelled"}
_HELD: list[Any] = []  # the scheduler lock lives as long as the process


def sample_path() -> Path:
    """The bundled sample chat dataset (package data)."""
    return Path(str(resources.files("tunebridge") / "samples" / SAMPLE))


@dataclass
class Seen:
    """What the follow loop has already shown."""

    after_event: int | None = None
    step: int = 0
    loss: float | None = None


def demo(
    max_steps: Annotated[int, typer.Option(min=1, help="Optimizer steps to train.")] = 8,
    max_seq_length: Annotated[int, typer.Option(min=16, help="Tokens per example.")] = 128,
    batch_size: Annotated[int, typer.Option(min=1)] = 4,
    eval_holdout: Annotated[float, typer.Option(
        min=0.0, max=0.5, help="Share of the sample held out for eval loss (0: none).")] = 0.1,
    probe: Annotated[int, typer.Option(
        min=0, help="Training prompts for the memorization probe (0: skip; slow on CPU).")] = 0,
    threads: Annotated[int | None, typer.Option(
        min=1, help="Torch threads for the trainer (default: TUNEBRIDGE_LOCAL_TORCH_THREADS).")]
    = None,
    dataset: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, help="Chat JSONL to train on instead of the sample.")] = None,
    model: Annotated[str, typer.Option(help="Base model name or local model directory.")]
    = DEMO_MODEL,
) -> None:
    """Train SmolLM2 on a bundled sample on this machine and show the loss (Ctrl-C cancels)."""
    from tunebridge import log
    from tunebridge.runtime import build_runtime

    overrides: dict[str, Any] = {"poll_interval_s": 1.0}
    if threads is not None:
        overrides["local_torch_threads"] = threads
    settings = Settings(**overrides)
    log.configure("warning", [])
    _claim_scheduler(settings)
    if Path(model).expanduser().is_dir():  # the catalogue takes directories as absolute paths
        model = str(Path(model).expanduser().resolve())
    _ensure_model(settings, model)
    runtime = build_runtime(settings)
    try:
        hyperparameters = {"max_steps": max_steps, "max_seq_length": max_seq_length,
                           "batch_size": batch_size, "n_epochs": 1,
                           "eval_steps": max(1, max_steps // 2)}
        options: dict[str, Any] = {"memorization_probe": probe}
        if eval_holdout > 0:
            options["eval_holdout"] = eval_holdout
        job = _start(runtime, dataset or sample_path(), model, hyperparameters, options)
        started = time.monotonic()
        job = _follow(runtime, job.id, max_steps)
        elapsed = time.monotonic() - started
        points = _metrics(runtime, job.id)
        _summary(job, points, _events(runtime, job.id, kind="health"), elapsed)
        _artifacts(job, points)
        _notifications(runtime)
    finally:
        runtime.close()
    raise typer.Exit(0 if job.status == "succeeded" else 1)


def _claim_scheduler(settings: Settings) -> None:
    """The demo polls like `serve` does, so it takes the same SQLite scheduler lock (held until
    this process exits): with a server running on the same data dir it refuses, as serve would."""
    from storage.leadership import SchedulerAlreadyRunning, sqlite_scheduler_lock

    lock = sqlite_scheduler_lock(settings.resolved_database_url)
    if lock is None:
        return
    try:
        lock.acquire()
    except SchedulerAlreadyRunning as exc:
        fail(str(exc))
    _HELD.append(lock)


def _ensure_model(settings: Settings, model: str) -> None:
    """SmolLM2 is installed exactly as `tunebridge models add` does; other names must exist."""
    from backends.local.catalogue import ModelCatalogue, UnknownModel
    from tunebridge.cli_models import SMOLLM2_ALIASES, add

    try:
        ModelCatalogue(settings.data_dir / "models").resolve(model)
    except UnknownModel as exc:
        if model not in SMOLLM2_ALIASES:
            fail(str(exc))
        err.print(f"{model} is not installed under {settings.data_dir / 'models'}: "
                  "installing it once (download ~100 MB, conversion ~30 s)")
        add(model)


def _start(runtime: Any, data: Path, model: str, hyperparameters: dict[str, Any],
           options: dict[str, Any]) -> Job:
    """Store the file as an upload is stored, then create the job as the API does."""
    from tunebridge import datasets, jobs
    from tunebridge.errors import TunebridgeError

    try:
        with data.open("rb") as fh:
            staged = runtime.blobs.stage(iter(lambda: fh.read(1 << 16), b""),
                                         max_bytes=runtime.settings.max_upload_bytes)
        stored = datasets.store_dataset(
            db=runtime.db, blobs=runtime.blobs, clock=runtime.clock, staged=staged,
            filename=data.name, creator=ACTOR, limits=runtime.validation_limits)
        ds = stored.dataset
        err.print(f"dataset [bold]{ds.id}[/]: {ds.num_examples} examples from {data.name}"
                  f"{'' if stored.created else ' (stored before)'}")
        created = jobs.create_job(
            db=runtime.db, registry=runtime.registry, clock=runtime.clock,
            policy=runtime.job_policy, creator=ACTOR,
            request=jobs.JobRequest(training_dataset_id=ds.id, base_model=model,
                                    backend="local", hyperparameters=hyperparameters,
                                    options=options))
        for warning in created.warnings:
            err.print(f"[yellow]lint[/]: {warning.message}")
        job = created.job
        if job.status == "awaiting_approval":  # a cap is configured; the user asked for this run
            err.print("the estimate is over a configured cap; approving it for the demo")
            job = jobs.approve_job(db=runtime.db, clock=runtime.clock, job_id=job.id,
                                   actor=jobs.Actor(name=ACTOR, source="cli"))
    except TunebridgeError as exc:
        fail(exc.message)
    err.print(f"job [bold]{job.id}[/]: local LoRA SFT of {model}, {hyperparameters['max_steps']} "
              f"steps, batch {hyperparameters['batch_size']}, "
              f"{hyperparameters['max_seq_length']} tokens")
    return job


def _follow(runtime: Any, job_id: str, total: int) -> Job:
    """Poll once a second with the real Poller until the job ends; Ctrl-C cancels it."""
    progress = Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("steps  loss {task.fields[loss]}"), TimeElapsedColumn(),
                        console=err, transient=False)
    seen = Seen()
    cancelled = False
    with progress:
        task = progress.add_task("starting", total=total, loss="–")
        while True:
            try:
                job = asyncio.run(_poll(runtime, job_id))
                _show(runtime, job, progress, task, seen)
                if job.status in TERMINAL:
                    return job
                time.sleep(1.0)
            except KeyboardInterrupt:
                if cancelled:
                    raise
                cancelled = True
                _cancel(runtime, job_id, progress)


async def _poll(runtime: Any, job_id: str) -> Job:
    from tunebridge import jobs

    job = jobs.get_job(db=runtime.db, job_id=job_id)
    if job.status not in TERMINAL:
        await runtime.poller.poll_job(job)
    return jobs.get_job(db=runtime.db, job_id=job_id)


def _show(runtime: Any, job: Job, progress: Progress, task: Any, seen: Seen) -> None:
    for event in _events(runtime, job.id, after=seen.after_event):
        seen.after_event = event.id
        colour = {"warning": "yellow", "error": "red"}.get(event.level, "dim")
        progress.console.print(f"[{colour}]{event.created_at:%H:%M:%S}[/] {event.message}",
                               soft_wrap=True)
    for point in _metrics(runtime, job.id, after_step=seen.step):
        if point.train_loss is not None:
            seen.step, seen.loss = point.step, point.train_loss
    phase = {"queued": "queued", "running": "training" if seen.step else "loading",
             "cancelling": "stopping"}.get(job.status, job.status)
    progress.update(task, completed=seen.step, description=phase,
                    loss=f"{seen.loss:.4f}" if seen.loss is not None else "–")


def _cancel(runtime: Any, job_id: str, progress: Progress) -> None:
    from tunebridge import jobs
    from tunebridge.errors import TunebridgeError

    progress.console.print("[yellow]Ctrl-C[/]: cancelling; the trainer saves its adapter at the "
                           "next step (Ctrl-C again to leave it running)")
    try:
        jobs.cancel_job(db=runtime.db, clock=runtime.clock, job_id=job_id,
                        actor=jobs.Actor(name=ACTOR, source="cli"))
    except TunebridgeError as exc:
        progress.console.print(f"cancel: {exc.message}")


def _events(runtime: Any, job_id: str, after: int | None = None,
            kind: str | None = None) -> list[JobEvent]:
    from tunebridge import jobs

    events = jobs.job_events(db=runtime.db, job_id=job_id, after_id=after, limit=1000)
    return [e for e in events if kind is None or e.kind == kind]


def _metrics(runtime: Any, job_id: str, after_step: int | None = None) -> list[MetricPoint]:
    from tunebridge import jobs

    return jobs.job_metrics(db=runtime.db, job_id=job_id, after_step=after_step, limit=100_000)


def _extremes(points: list[tuple[int, float]]) -> list[str]:
    """first, last and best (lowest) value of a series, each with its step."""
    if not points:
        return ["–", "–", "–"]
    best = min(points, key=lambda p: (p[1], p[0]))
    return [f"{value:.4f} @ {step}" for step, value in (points[0], points[-1], best)]


def _summary(job: Job, points: list[MetricPoint], health: list[JobEvent], elapsed: float) -> None:
    result = job.result or {}
    colour = "green" if job.status == "succeeded" else "red"
    out.print(f"\n[bold {colour}]{job.id} {job.status}[/] in {elapsed:.0f} s "
              f"({result.get('path', '?')}, {result.get('global_step', '?')} steps)")
    if job.error:
        out.print(f"[red]{job.error.get('message')}[/]")
    table = Table("loss", "first", "last", "best", title="Loss summary")
    train = [(p.step, p.train_loss) for p in points if p.train_loss is not None]
    evals = [(p.step, p.eval_loss) for p in points if p.eval_loss is not None]
    table.add_row("train", *_extremes(train))
    if evals:
        table.add_row("eval", *_extremes(evals))
    out.print(table)
    memorization = result.get("memorization") or {}
    if memorization.get("verbatim_rate") is not None:
        out.print(f"memorization probe: {memorization['verbatim_rate']:.0%} of "
                  f"{memorization['sampled']} sampled training prompts reproduced verbatim")
    for event in health:
        out.print(f"[yellow]health[/] {event.level}: {event.message}")
        for fix in (event.data or {}).get("fixes", [])[:2]:
            out.print(f"    fix: {fix}")
    if not health:
        out.print("health: no findings (no divergence, NaN, spikes or overfitting seen)")


def _artifacts(job: Job, points: list[MetricPoint]) -> None:
    """Where the work is: the adapter directory and the loss chart beside it."""
    from bot.chart import loss_chart

    result = job.result or {}
    adapter = result.get("adapter_path")
    out.print(f"adapter: {adapter}" if adapter else "adapter: none saved", soft_wrap=True)
    run_dir = Path(str(result.get("run_dir") or "."))
    png = loss_chart(points, title=f"{job.id} · {job.base_model}")
    if png is None:
        out.print("loss chart: no metrics to plot")
        return
    chart = run_dir / "loss.png"
    chart.write_bytes(png)
    out.print(f"loss chart: {chart}", soft_wrap=True)


def _notifications(runtime: Any) -> None:
    """Deliver what the job queued (status changes, findings, the completion summary) here, as
    serve does without Slack; left in the outbox, a later `serve` on this data dir would."""
    out.print("\n[bold]notifications[/] (what `serve` posts to Slack when it is configured):")
    asyncio.run(runtime.sender.drain())
