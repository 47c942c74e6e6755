"""A job whose estimate is over a cap waits for an admin's approval, then runs."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers

from tests.conftest import LiveApi, run_until


def _model_dir(tmp_path: Path) -> Path:
    """Just enough of a local model for token counting: config.json and tokenizer.json."""
    directory = tmp_path / "tiny-model"
    directory.mkdir()
    (directory / "config.json").write_text('{"model_type": "llama"}')
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(directory / "tokenizer.json"))
    return directory


def test_over_the_cap_waits_for_approval(live: LiveApi, chat_jsonl: bytes,
                                          tmp_path: Path) -> None:
    live.runtime.settings.max_gpu_hours = 0.0
    reader = live.key("read", "jobs:write")
    with live.client() as http:
        dataset_id = http.post("/api/datasets", content=chat_jsonl).json()["id"]
        created = http.post("/api/jobs", json={
            "training_dataset_id": dataset_id, "base_model": str(_model_dir(tmp_path)),
            "backend": "scripted", "options": {"scripted_step_seconds": 0.01}})
        job = created.json()
        assert created.status_code == 201, created.text
        assert job["status"] == "awaiting_approval"
        assert job["estimate"]["gpu_time"]["gpu_hours"] > 0
        assert job["estimate"]["tokens"]["examples"] == 12
        run_until(live.runtime, job["id"], {"awaiting_approval"})  # the poller leaves it alone
        with live.client(reader) as other:
            assert other.post(f"/api/jobs/{job['id']}/approve").status_code == 403
        approved = http.post(f"/api/jobs/{job['id']}/approve")
        assert approved.status_code == 200 and approved.json()["status"] == "queued"
        again = http.post(f"/api/jobs/{job['id']}/approve")
        assert again.status_code == 409
    assert run_until(live.runtime, job["id"], {"succeeded"}) == "succeeded"
