"""The gateway side of the local backend stays light, and base models resolve offline."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from backends.base import BackendError, JobSpec
from backends.local.catalogue import SMOLLM2_NAME, ModelCatalogue, UnknownModel
from tests.local.conftest import make_backend

HEAVY = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "bitsandbytes")


def test_importing_the_backend_does_not_import_torch() -> None:
    code = (
        "import sys, json; import backends.local; from backends.local import LocalBackend; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert json.loads(out.stdout) == []


def fake_model_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_models_resolve_by_path_name_alias_and_hub_id(tmp_path: Path) -> None:
    models = tmp_path / "models"
    smol = fake_model_dir(models / SMOLLM2_NAME)
    own = fake_model_dir(tmp_path / "elsewhere" / "mine")
    catalogue = ModelCatalogue(models)
    assert catalogue.names() == [SMOLLM2_NAME]
    assert catalogue.resolve(str(own)).source == "path"
    for name in (SMOLLM2_NAME, "smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct"):
        resolved = catalogue.resolve(name)
        assert (resolved.source, resolved.location) == ("catalogue", str(smol.resolve()))
    assert catalogue.resolve("meta-llama/Llama-3.2-1B").source == "hub"
    with pytest.raises(UnknownModel, match=SMOLLM2_NAME):
        ModelCatalogue(models, allow_hub_ids=False).resolve("meta-llama/Llama-3.2-1B")
    with pytest.raises(UnknownModel):
        catalogue.resolve("no-such-model")


def test_submit_rejects_what_can_never_train(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"text": "hi"}) + "\n")
    model = fake_model_dir(tmp_path / "m")
    backend = make_backend(tmp_path)
    bad_specs = [
        JobSpec("j1", "no-such-model", "sft", {}, data),
        JobSpec("j2", str(model), "sft", {"learning_rate": -1}, data),
        JobSpec("j3", str(model), "sft", {}, tmp_path / "missing.jsonl"),
        JobSpec("j4", str(model), "sft", {}, data, options={"engine": "tpu"}),
        JobSpec("j5", str(model), "ppo", {}, data),
    ]
    for spec in bad_specs:
        with pytest.raises(BackendError) as caught:
            asyncio.run(backend.submit(spec))
        assert caught.value.retryable is False, spec.job_id
    assert not list((tmp_path / "runs").glob("local-*")), "a rejected job left a run behind"
