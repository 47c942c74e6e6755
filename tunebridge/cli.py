"""`tunebridge` command line: server administration plus an HTTP client for the API."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tunebridge.cli_demo import demo
from tunebridge.cli_jobs import jobs_app
from tunebridge.cli_models import models_app
from tunebridge.cli_support import client_from_options, fail, print_json
from tunebridge.settings import Settings

app = typer.Typer(help="tunebridge: chat-ops and REST gateway for managed fine-tuning.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
keys_app = typer.Typer(help="API keys (run on the server host).", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
datasets_app = typer.Typer(help="Datasets (over the HTTP API).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(datasets_app, name="datasets")
app.add_typer(jobs_app, name="jobs")
app.add_typer(models_app, name="models")
app.command("demo")(demo)
err = Console(stderr=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Bind port.")] = None,
) -> None:
    """Run gateway, scheduler and notifier in one process."""
    import uvicorn

    from gateway.app import create_app
    from storage.leadership import SchedulerAlreadyRunning, sqlite_scheduler_lock
    from tunebridge import api_keys, log
    from tunebridge.runtime import build_runtime

    settings = Settings()
    secrets = [s.get_secret_value() for s in (settings.openai_api_key, settings.slack_bot_token,
               settings.slack_app_token, settings.slack_signing_secret) if s is not None]
    log.configure(settings.log_level, secrets)
    # SQLite serves one process: a second scheduler on the same file refuses to start. The
    # lock lives as long as this frame, which is the life of the server.
    scheduler_lock = sqlite_scheduler_lock(settings.resolved_database_url) \
        if settings.scheduler_enabled else None
    if scheduler_lock is not None:
        try:
            scheduler_lock.acquire()
        except SchedulerAlreadyRunning as exc:
            fail(str(exc))
    runtime = build_runtime(settings)
    key_file = api_keys.ensure_admin_key(db=runtime.db, clock=runtime.clock,
                                         path=settings.admin_key_file)
    if key_file is not None:
        err.print(f"[bold green]Created an admin API key[/] in {key_file} (mode 0600). "
                  f"Use it as: Authorization: Bearer $(cat {key_file})")
    uvicorn.run(create_app(settings, runtime=runtime), host=host or settings.host,
                port=port or settings.port, log_level=settings.log_level, log_config=None)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply schema migrations up to the latest revision."""
    from storage import migration
    from storage.database import Database

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    migration.upgrade(db.engine)
    err.print(f"Schema at revision {migration.current_revision(db.engine)}.")


def _admin_runtime() -> Any:
    from tunebridge.runtime import build_runtime

    return build_runtime(Settings(), backends=[])


@keys_app.command("create")
def keys_create(
    scope: Annotated[list[str], typer.Option("--scope", help="Repeat: read, datasets:write, "
                                             "jobs:write, jobs:cancel, admin.")],
    name: Annotated[str, typer.Option(help="Label shown in audits.")] = "cli",
    as_json: Annotated[bool, typer.Option("--json", help="Print {\"key\": ...}.")] = False,
) -> None:
    """Create a key and print it once; only its hash is stored."""
    from tunebridge import api_keys
    from tunebridge.errors import TunebridgeError

    runtime = _admin_runtime()
    try:
        issued = api_keys.create_key(db=runtime.db, clock=runtime.clock, name=name, scopes=scope)
    except TunebridgeError as exc:
        fail(exc.message)
    if as_json:
        print_json({"key": issued.plaintext, "id": issued.key.id, "scopes": issued.key.scopes})
    else:
        typer.echo(issued.plaintext)
        err.print(f"key id {issued.key.id}, scopes {', '.join(issued.key.scopes)}; "
                  "it will not be shown again.")


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    from rich.table import Table

    from tunebridge import api_keys

    keys = api_keys.list_keys(db=_admin_runtime().db)
    rows: list[dict[str, Any]] = [
        {"id": k.id, "name": k.name, "prefix": k.prefix, "scopes": k.scopes,
         "revoked": k.revoked_at is not None}
        for k in keys
    ]
    if as_json:
        print_json(rows)
        return
    table = Table("id", "name", "prefix", "scopes", "revoked")
    for row in rows:
        table.add_row(row["id"], row["name"], row["prefix"] + "…", " ".join(row["scopes"]),
                      "yes" if row["revoked"] else "")
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    from tunebridge import api_keys
    from tunebridge.errors import TunebridgeError

    runtime = _admin_runtime()
    try:
        api_keys.revoke_key(db=runtime.db, clock=runtime.clock, key_id=key_id)
    except TunebridgeError as exc:
        fail(exc.message)
    err.print(f"Revoked {key_id}.")


@datasets_app.command("upload")
def datasets_upload(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    api_url: Annotated[str | None, typer.Option(envvar="TUNEBRIDGE_API_URL")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="TUNEBRIDGE_API_KEY")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Upload a JSONL file with a progress bar; prints the dataset id or its problems."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from tunebridge.client import ApiError

    client = client_from_options(api_url, api_key)
    size = file.stat().st_size
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), console=err, disable=as_json) as progress:
        task = progress.add_task(f"upload {file.name}", total=size)
        try:
            dataset = client.upload(file, on_progress=lambda n: progress.advance(task, n))
        except ApiError as exc:
            progress.stop()
            _print_problems(exc.body, as_json)
            raise typer.Exit(1) from None
    if as_json:
        print_json(dataset)
    else:
        typer.echo(dataset["id"])
        err.print(f"{dataset['num_examples']} examples, format {dataset['format']}, "
                  f"sha256 {dataset['sha256'][:12]}…")


@app.command("validate")
def validate(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    model: Annotated[str | None, typer.Option(help="OpenAI model: token counts, context.")] = None,
    backend: Annotated[str | None, typer.Option(help="openai | local")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    workers: Annotated[int | None, typer.Option(
        min=1, help="Processes for a file of 64 MB or more (default: one per CPU, up to 8).",
    )] = None,
) -> None:
    """Validate a JSONL file locally, as an upload would be; exit 0 valid, 1 invalid."""
    from tunebridge.validation import validate_file

    processes = workers or min(len(os.sched_getaffinity(0)), 8)
    report = validate_file(file, backend=backend, model=model, workers=processes)
    if as_json:
        print_json(report.as_dict())
    else:
        _print_report(report.as_dict())
    raise typer.Exit(0 if report.ok else 1)


def _print_report(report: dict[str, Any]) -> None:
    from rich.table import Table

    console = Console()
    verdict = "[green]valid[/]" if report["ok"] else "[red]invalid[/]"
    console.print(f"{verdict}: {report['num_examples']} examples, format {report['format']}")
    table = Table("line", "severity", "code", "field", "message")
    for problem in report["problems"]:
        table.add_row(str(problem.get("line", "")), problem.get("severity", "error"),
                      problem["code"], problem.get("field", ""), problem["message"])
    if report["problems"]:
        console.print(table)


@app.command("health")
def health(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check a run made anywhere: trainer_state.json, metrics JSONL or OpenAI metrics CSV."""
    from tunebridge.errors import TunebridgeError
    from tunebridge.health import analyze_file

    try:
        report = analyze_file(file)
    except TunebridgeError as exc:
        fail(exc.message)
    if as_json:
        print_json(report)
        return
    console = Console()
    for finding in report["findings"]:
        console.print(f"[bold]{finding['severity']}[/] {finding['kind']} at step "
                      f"{finding['step']}: {finding['message']}")
        for fix in finding["fixes"]:
            console.print(f"    fix: {fix}")
    if not report["findings"]:
        console.print("[green]no problems found[/]")
    console.print(f"best eval step: {report['best_eval_step']}")


def _print_problems(body: dict[str, Any], as_json: bool) -> None:
    if as_json:
        json.dump(body, sys.stdout)
        sys.stdout.write("\n")
        return
    error = body.get("error", {})
    err.print(f"[red]{error.get('code')}[/]: {error.get('message')}")
    for problem in error.get("problems", [])[:20]:
        where = f"line {problem['line']}: " if "line" in problem else ""
        err.print(f"  {where}{problem.get('code')}: {problem.get('message')}")


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":
    main()
