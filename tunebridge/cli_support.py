"""What the CLI's HTTP commands share: finding the API and a key, printing JSON, failing."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import orjson
import typer
from rich.console import Console

from tunebridge.client import ApiClient
from tunebridge.settings import Settings


def fail(message: str, code: int = 1) -> NoReturn:
    Console(stderr=True).print(f"[red]error[/]: {message}")
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def client_from_options(api_url: str | None, api_key: str | None) -> ApiClient:
    """Explicit options win; on the server host the bootstrap admin key file is the fallback."""
    settings = Settings()
    url = api_url or f"http://{settings.host}:{settings.port}"
    if api_key is None and settings.admin_key_file.exists():
        api_key = settings.admin_key_file.read_text().strip()
    if not api_key:
        fail("no API key: pass --api-key or set TUNEBRIDGE_API_KEY")
    return ApiClient(url, api_key)
