"""Real training on CPU through LocalBackend: a tiny Llama, real trl trainers, real subprocesses.

Each test drives a job only through submit/poll/cancel with handles and cursors, as the scheduler
does, and checks what lands on disk with the libraries a user would load it with.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backends.base import Handle, JobSpec, RemoteStatus
from backends.local import LocalBackend
from tests.local.conftest import (
    Observed,
    fake_trainer,
    make_backend,
    poll_once,
    poll_until,
    sft_spec,
)
from tests.local.tinymodel import dpo_rows_openai, write_jsonl

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def load_adapter(base: Path, adapter: Path) -> object:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base)),
                                      str(adapter))
    assert any("lora_A" in name for name, _ in model.named_parameters())
    return model


# A gateway process that submits the job, follows it for a while, prints what it knows and
# dies without any cleanup, as a crashed `tunebridge serve` would.
CRASHING_GATEWAY = """
import asyncio, json, os, sys
from pathlib import Path
from tests.local.conftest import Observed, make_backend, poll_until, sft_spec
root, model, train, val = map(Path, sys.argv[1:5])
backend = make_backend(root)
spec = sft_spec("job-sft", model, train, val, options={"merge": True}, max_steps=40,
                eval_steps=10)
handle = asyncio.run(backend.submit(spec))
seen = Observed()
poll_until(backend, handle, seen, done=lambda s: len(s.metrics) >= 8)
print(json.dumps({"id": handle.external_id, "state": dict(handle.state), "cursor": seen.cursor,
                  "metrics": len(seen.metrics), "statuses": [u.status for u in seen.updates]}))
sys.stdout.flush()
os._exit(0)
"""


@dataclass
class SftRun:
    before_crash: dict[str, Any]
    after: Observed
    handle: Handle
    root: Path


@pytest.fixture(scope="module")
def sft_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, facts_files: tuple[Path, Path]
) -> SftRun:
    """An SFT job started by a gateway process that then crashes; a fresh backend in this
    process carries on with only the handle and the cursor the dead gateway had stored."""
    root = tmp_path_factory.mktemp("sft")
    args = [str(root), str(tiny_model), *map(str, facts_files)]
    out = subprocess.run([sys.executable, "-c", CRASHING_GATEWAY, *args], capture_output=True,
                         text=True, timeout=120, cwd=REPO, check=True)
    before = json.loads(out.stdout.strip().splitlines()[-1])
    handle = Handle(before["id"], before["state"])
    seen = Observed(cursor=before["cursor"])
    poll_until(make_backend(root), handle, seen)
    return SftRun(before, seen, handle, root)


def test_sft_metrics_arrive_while_training(sft_run: SftRun) -> None:
    assert sft_run.before_crash["metrics"] >= 8
    assert set(sft_run.before_crash["statuses"]) <= {"queued", "running"}
    assert sft_run.after.final.status is RemoteStatus.SUCCEEDED, sft_run.after.final.error


def test_trainer_survives_gateway_crash_and_is_reattached(sft_run: SftRun) -> None:
    """No step lost or repeated across the crash: the cursor picks up where the old one was."""
    after = sft_run.after.metrics
    steps_seen = sft_run.before_crash["metrics"] + len(after)
    assert steps_seen == 40 + 4  # 40 train records and 4 evaluations
    train_steps = [m.step for m in after if m.train_loss is not None]
    # The cursor may land between a step's train record and its eval record, so the first
    # record after the crash can be an eval one: compare the train steps with themselves.
    assert train_steps == list(range(train_steps[0], 41))
    assert [m.step for m in after if m.eval_loss is not None][-1] == 40
    ids = sft_run.after.event_ids()
    assert len(set(ids)) == len(ids)
    assert "launched" not in ids, "events before the stored cursor were replayed"


def test_sft_result_names_path_adapter_probe_and_merge(sft_run: SftRun, tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM

    seen = sft_run.after
    result = seen.final.result or {}
    assert result["path"] == "lora-cpu-fp32"
    assert result["loss_mask"] == "assistant_only"
    assert result["stop_reason"] == "completed"
    assert result["best_checkpoint"] and Path(result["best_checkpoint"]).is_dir()
    assert 0.0 <= result["memorization"]["verbatim_rate"] <= 1.0
    assert Path(result["trainer_state_path"]).is_file()
    assert (Path(result["adapter_path"]) / "adapter_model.safetensors").is_file()
    load_adapter(tiny_model, Path(result["adapter_path"]))
    AutoModelForCausalLM.from_pretrained(result["merged_model_path"])
    state = json.loads(Path(result["trainer_state_path"]).read_text())
    losses = [r["loss"] for r in state["log_history"] if "loss" in r]
    assert sum(losses[-5:]) < sum(losses[:5]), "LoRA did not lower the training loss"
    assert "adapter-saved" in seen.event_ids()


def test_resubmitting_the_same_job_returns_the_same_run(
    sft_run: SftRun, tiny_model: Path, facts_files: tuple[Path, Path],
) -> None:
    again = asyncio.run(make_backend(sft_run.root).submit(
        sft_spec("job-sft", tiny_model, facts_files[0], max_steps=40)))
    assert again == sft_run.handle


def test_dpo_from_openai_preference_shape(
    backend: LocalBackend, tiny_model: Path, tmp_path: Path,
) -> None:
    data = write_jsonl(tmp_path / "prefs.jsonl", dpo_rows_openai(12))
    spec = JobSpec(job_id="job-dpo", base_model=str(tiny_model), method="dpo",
                   hyperparameters={"batch_size": 4, "max_steps": 6, "max_seq_length": 64,
                                    "learning_rate": 1e-3},
                   training_file=data, options={"eval_holdout": 0.25})
    seen = poll_until(backend, asyncio.run(backend.submit(spec)), Observed())
    assert seen.final.status is RemoteStatus.SUCCEEDED, seen.final.error
    train = [m for m in seen.metrics if m.train_loss is not None]
    assert [m.step for m in train] == list(range(1, 7))
    assert {"rewards/margins", "rewards/accuracies"} <= set(train[-1].extra)
    assert any(m.eval_loss is not None for m in seen.metrics)
    result = seen.final.result or {}
    assert result["loss_mask"] == "dpo" and result["eval_examples"] == 3
    assert "memorization" not in result


def test_early_stopping_fires_on_an_overfitting_run(
    backend: LocalBackend, tiny_model: Path, facts_files: tuple[Path, Path],
) -> None:
    train, val = facts_files
    spec = sft_spec("job-overfit", tiny_model, train, val, n_epochs=30, learning_rate=3e-3,
                    eval_steps=5, early_stopping_patience=3)
    seen = poll_until(backend, asyncio.run(backend.submit(spec)), Observed())
    result = seen.final.result or {}
    assert seen.final.status is RemoteStatus.SUCCEEDED, seen.final.error
    assert result["stop_reason"] == "early_stopping"
    assert result["global_step"] < result["max_steps"] == 150
    evals = {m.step: m.eval_loss for m in seen.metrics if m.eval_loss is not None}
    best_step = min(evals, key=lambda step: evals[step])
    assert result["best_step"] == best_step
    assert result["best_checkpoint"].endswith(f"checkpoint-{best_step}")
    assert Path(result["best_checkpoint"], "adapter_model.safetensors").is_file()
    assert max(s for s in evals if s > best_step) == result["global_step"]
    assert "early-stopped" in seen.event_ids()


def test_cancel_mid_run_leaves_a_loadable_adapter(
    backend: LocalBackend, tiny_model: Path, facts_files: tuple[Path, Path],
) -> None:
    handle = asyncio.run(backend.submit(
        sft_spec("job-cancel", tiny_model, facts_files[0], max_steps=5000)))
    seen = poll_until(backend, handle, Observed(), done=lambda s: len(s.metrics) >= 3)
    asyncio.run(backend.cancel(handle))
    poll_until(backend, handle, seen)
    result = seen.final.result or {}
    assert seen.final.status is RemoteStatus.CANCELLED
    assert result["stop_reason"].startswith("cancelled after step")
    assert result["global_step"] < 5000
    load_adapter(tiny_model, Path(result["adapter_path"]))
    state = json.loads(Path(result["trainer_state_path"]).read_text())
    assert state["global_step"] == result["global_step"]
    asyncio.run(backend.cancel(handle))  # repeating a cancel is harmless
    assert poll_once(backend, handle, seen).status is RemoteStatus.CANCELLED


def test_killed_trainer_fails_with_reason_and_next_in_queue_starts(
    tmp_path: Path, tiny_model: Path, facts_files: tuple[Path, Path],
) -> None:
    backend = make_backend(tmp_path)
    first = asyncio.run(backend.submit(
        sft_spec("job-a", tiny_model, facts_files[0], max_steps=5000)))
    second = asyncio.run(backend.submit(
        sft_spec("job-b", tiny_model, facts_files[0], max_steps=5000)))
    waiting = poll_once(backend, second, Observed())
    assert waiting.status is RemoteStatus.QUEUED
    assert [e.data["queue_position"] for e in waiting.events if "queue_position" in e.data] == [1]
    seen = poll_until(backend, first, Observed(), done=lambda s: len(s.metrics) >= 2)
    os.kill(trainer_pid(first), signal.SIGKILL)
    poll_until(backend, first, seen, timeout=10)
    assert seen.final.status is RemoteStatus.FAILED
    reason = (seen.final.error or {})["message"]
    assert "killed by SIGKILL" in reason and "ended without a final status" in reason
    assert seen.metrics, "metrics written before the crash must stay"
    # The slot is free again: the queued job starts. A plain SIGTERM (an operator's `kill`)
    # is a graceful stop, like a cancel: the adapter is saved.
    later = poll_until(backend, second, Observed(), done=lambda s: len(s.metrics) >= 2)
    os.kill(trainer_pid(second), signal.SIGTERM)
    poll_until(backend, second, later, timeout=30)
    assert later.final.status is RemoteStatus.CANCELLED
    assert Path((later.final.result or {})["adapter_path"]).is_dir()
    assert any("SIGTERM" in e.message for e in later.events if e.event_id.endswith("honoured"))


def trainer_pid(handle: Handle) -> int:
    launch = json.loads((Path(handle.state["run_dir"]) / "launch.json").read_text())
    return int(launch["pid"])


def test_cancel_while_queued_never_starts_a_trainer(
    backend: LocalBackend, tiny_model: Path, facts_files: tuple[Path, Path],
) -> None:
    _, busy = fake_trainer(backend.runs_dir, "busy", "import time; time.sleep(60)")
    try:
        handle = asyncio.run(backend.submit(sft_spec("job-q", tiny_model, facts_files[0])))
        assert poll_once(backend, handle, Observed()).status is RemoteStatus.QUEUED
        asyncio.run(backend.cancel(handle))
        update = poll_once(backend, handle, Observed())
    finally:
        busy.kill()
        busy.wait()
    assert update.status is RemoteStatus.CANCELLED
    assert update.result and update.result["reason"] == "cancelled while queued"
    assert not (Path(handle.state["run_dir"]) / "launch.json").exists()



def test_non_finite_loss_fails_the_run_and_keeps_metrics(
    backend: LocalBackend, tiny_model: Path, facts_files: tuple[Path, Path],
) -> None:
    spec = sft_spec("job-nan", tiny_model, facts_files[0], learning_rate=1e4, warmup_ratio=0,
                    n_epochs=5)
    seen = poll_until(backend, asyncio.run(backend.submit(spec)), Observed())
    assert seen.final.status is RemoteStatus.FAILED
    assert "became nan" in (seen.final.error or {})["message"]
    assert any(m.grad_norm is not None and math.isnan(m.grad_norm) for m in seen.metrics)


def test_trainer_crash_fails_with_the_exception(
    backend: LocalBackend, tiny_model: Path, tmp_path: Path,
) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    seen = poll_until(backend, asyncio.run(backend.submit(sft_spec("job-bad", tiny_model, bad))),
                      Observed())
    assert seen.final.status is RemoteStatus.FAILED
    assert "DataError" in (seen.final.error or {})["message"]


def test_relative_data_dirs_are_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    """`make run` passes var/runs: the trainer runs in its own cwd, so relative paths broke it."""
    from backends.local import LocalBackend

    monkeypatch.chdir(tmp_path)
    backend = LocalBackend(Path("var/runs"), Path("var/models"), slots=["cpu"])
    assert backend.runs_dir == tmp_path / "var" / "runs"
