"""`tunebridge jobs ...`: start, list, show, watch and cancel over the HTTP API."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tunebridge.cli_support import client_from_options, fail, print_json
from tunebridge.client import ApiClient, ApiError

jobs_app = typer.Typer(help="Jobs (over the HTTP API).", no_args_is_help=True)
out = Console()
err = Console(stderr=True)

ApiUrl = Annotated[str | None, typer.Option(envvar="TUNEBRIDGE_API_URL", help="Gateway URL.")]
ApiKeyOpt = Annotated[str | None, typer.Option(envvar="TUNEBRIDGE_API_KEY", help="API key.")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
TERMINAL = {"succeeded", "failed", "cancelled"}


def _call(action: Any) -> Any:
    try:
        return action()
    except ApiError as exc:
        fail(str(exc))


@jobs_app.command("start")
def start(
    dataset: Annotated[str, typer.Option(help="Training dataset id.")],
    model: Annotated[str, typer.Option(help="Base model.")],
    backend: Annotated[str | None, typer.Option(help="local | openai")] = None,
    method: Annotated[str, typer.Option(help="sft | dpo")] = "sft",
    validation: Annotated[str | None, typer.Option(help="Validation dataset id.")] = None,
    hp: Annotated[list[str], typer.Option("--hp", help="Hyperparameter k=v; repeat.")] = [],  # noqa: B006
    opt: Annotated[list[str], typer.Option("--opt", help="Job option k=v; repeat.")] = [],  # noqa: B006
    channel: Annotated[str | None, typer.Option(help="Slack channel to notify.")] = None,
    general_mix: Annotated[str | None, typer.Option(
        "--general-mix", help="Forgetting guard: DATASET_ID[:FRACTION] (default 0.2 of the "
        "task set; builtin:general is the bundled sample).")] = None,
    mix_seed: Annotated[int, typer.Option("--mix-seed", help="Seed of the general mix.")] = 0,
    api_url: ApiUrl = None, api_key: ApiKeyOpt = None, as_json: AsJson = False,
) -> None:
    """Create a job; hyperparameters default to the seed's table."""
    body: dict[str, Any] = {"training_dataset_id": dataset, "base_model": model,
                            "method": method, "hyperparameters": _parse_pairs(hp),
                            "options": _parse_pairs(opt)}
    if backend:
        body["backend"] = backend
    if validation:
        body["validation_dataset_id"] = validation
    if channel:
        body["notify"] = {"slack_channel": channel}
    if general_mix:
        body["general_mix"] = parse_general_mix(general_mix) | {"seed": mix_seed}
    job = _call(lambda: client_from_options(api_url, api_key).post("/api/jobs", body))
    if as_json:
        print_json(job)
        return
    typer.echo(job["id"])
    for warning in job.get("warnings", []):
        err.print(f"[yellow]warning[/]: {warning['message']}")


def parse_general_mix(value: str) -> dict[str, Any]:
    """`ds_x`, `ds_x:0.3`, `builtin:general` or `builtin:general:0.3`: a trailing number after
    the last colon is the fraction (ids themselves may contain colons)."""
    head, sep, tail = value.rpartition(":")
    try:
        fraction = float(tail) if sep else None
    except ValueError:
        fraction = None
    if fraction is None:
        return {"dataset_id": value}
    if not head:
        fail(f"--general-mix needs a dataset id, got {value!r}")
    return {"dataset_id": head, "fraction": fraction}


def _parse_pairs(pairs: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep:
            fail(f"expected name=value, got {pair!r}")
        try:
            values[name] = int(raw)
        except ValueError:
            try:
                values[name] = float(raw)
            except ValueError:
                values[name] = {"true": True, "false": False}.get(raw.lower(), raw)
    return values


@jobs_app.command("list")
def list_jobs(
    status: Annotated[list[str], typer.Option(help="Filter; repeat.")] = [],  # noqa: B006
    limit: int = 20, cursor: str | None = None,
    api_url: ApiUrl = None, api_key: ApiKeyOpt = None, as_json: AsJson = False,
) -> None:
    page = _call(lambda: client_from_options(api_url, api_key).get(
        "/api/jobs", status=status, limit=limit, cursor=cursor))
    if as_json:
        print_json(page)
        return
    table = Table("id", "status", "backend", "model", "method", "created")
    for job in page["data"]:
        table.add_row(job["id"], job["status"], job["backend"], job["base_model"],
                      job["method"], job["created_at"][:19])
    out.print(table)
    if page.get("next_cursor"):
        err.print(f"more: --cursor {page['next_cursor']}")


@jobs_app.command("show")
def show(job_id: str, api_url: ApiUrl = None, api_key: ApiKeyOpt = None,
         as_json: AsJson = False) -> None:
    job = _call(lambda: client_from_options(api_url, api_key).get(f"/api/jobs/{job_id}"))
    if as_json:
        print_json(job)
        return
    for key in ("id", "status", "backend", "base_model", "method", "external_id", "creator",
                "created_at", "started_at", "finished_at"):
        out.print(f"[bold]{key:>12}[/] {job.get(key)}")
    out.print(f"[bold]{'hyperparams':>12}[/] {job['hyperparameters']}")
    for key in ("result", "error"):
        if job.get(key):
            out.print(f"[bold]{key:>12}[/] {job[key]}")


@jobs_app.command("cancel")
def cancel(job_id: str, api_url: ApiUrl = None, api_key: ApiKeyOpt = None,
           as_json: AsJson = False) -> None:
    job = _call(lambda: client_from_options(api_url, api_key).post(f"/api/jobs/{job_id}/cancel"))
    if as_json:
        print_json(job)
    else:
        typer.echo(f"{job['id']} {job['status']}")


@jobs_app.command("pause")
def pause(job_id: str, api_url: ApiUrl = None, api_key: ApiKeyOpt = None,
          as_json: AsJson = False) -> None:
    """Hold a running job at its provider (backends that can pause, e.g. openai)."""
    _act(job_id, "pause", api_url, api_key, as_json)


@jobs_app.command("resume")
def resume(job_id: str, api_url: ApiUrl = None, api_key: ApiKeyOpt = None,
           as_json: AsJson = False) -> None:
    """Continue a paused job."""
    _act(job_id, "resume", api_url, api_key, as_json)


def _act(job_id: str, verb: str, api_url: str | None, api_key: str | None,
         as_json: bool) -> None:
    job = _call(lambda: client_from_options(api_url, api_key).post(f"/api/jobs/{job_id}/{verb}"))
    if as_json:
        print_json(job)
    else:
        typer.echo(f"{job['id']} {job['status']}")


@jobs_app.command("watch")
def watch(job_id: str, interval: float = 2.0, api_url: ApiUrl = None,
          api_key: ApiKeyOpt = None, as_json: AsJson = False) -> None:
    """Follow a job live (events, metrics) until it ends; exit 0 only if it succeeded."""
    client = client_from_options(api_url, api_key)
    job = _call(lambda: _follow(client, job_id, interval, as_json))
    raise typer.Exit(0 if job["status"] == "succeeded" else 1)


def _follow(client: ApiClient, job_id: str, interval: float, as_json: bool) -> dict[str, Any]:
    after_event: int | None = None
    after_step: int | None = None
    while True:
        job = client.get(f"/api/jobs/{job_id}")
        events = client.get(f"/api/jobs/{job_id}/events", after=after_event)["data"]
        metrics = client.get(f"/api/jobs/{job_id}/metrics", after_step=after_step)["data"]
        for event in events:
            after_event = event["id"]
            _emit({"event": event}, as_json, f"[dim]{event['created_at'][11:19]}[/] "
                  f"{event['message']}")
        for point in metrics:
            after_step = point["step"]
            _emit({"metric": point}, as_json, _metric_line(point))
        if job["status"] in TERMINAL:
            _emit({"job": job}, as_json, f"[bold]{job_id} {job['status']}[/]")
            return dict(job)
        time.sleep(interval)


def _metric_line(point: dict[str, Any]) -> str:
    parts = [f"step {point['step']}"]
    for key in ("epoch", "train_loss", "eval_loss", "grad_norm", "learning_rate"):
        if point.get(key) is not None:
            parts.append(f"{key} {point[key]:.4g}")
    return "  " + "  ".join(parts)


def _emit(record: dict[str, Any], as_json: bool, text: str) -> None:
    if as_json:
        print_json(record)
    else:
        out.print(text)
