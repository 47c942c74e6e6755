"""Real training on CPU through LocalBackend: a tiny Llama, real trl trainers, real subprocesses.

Each test drives a job only through submit/poll/cancel with handles and cursors, as the scheduler
does, and checks what lands on disk with the libraries a user would load it with.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
from pathlib import Path

import pytest

from backends.base import Handle, JobSpec, RemoteStatus
from backends.local import LocalBackend
from backends.local.runs import RunDir, RunState, write_json_atomic
from tests.local.conftest import Observed, make_backend, poll_once, poll_until, sft_spec
from tests.local.tinymodel import dpo_rows_openai, write_jsonl

pytestmark = pytest.mark.slow


def load_adapter(base: Path, adapter: Path) -> object:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base)),
                                      str(adapter))
    assert any("lora_A" in name for name, _ in model.named_parameters())
    return model


@pytest.fixture(scope="module")
def sft_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, facts_files: tuple[Path, Path]
) -> tuple[Observed, int, Handle, Path]:
    """An SFT job polled by one backend instance until mid-run, then by a fresh instance (a
    gateway restart) with only the handle and the cursor."""
    root = tmp_path_factory.mktemp("sft")
    train, val = facts_files
    spec = sft_spec("job-sft", tiny_model, train, val, max_steps=40, eval_steps=10)
    first = make_backend(root)
    handle = asyncio.run(first.submit(spec))
    seen = Observed()
    poll_until(first, handle, seen, done=lambda s: len(s.metrics) >= 8)
    switched_at = len(seen.updates)
    second = make_backend(root)  # knows nothing but the directory it is given
    poll_until(second, Handle(handle.external_id, dict(handle.state)), seen)
    return seen, switched_at, handle, root


def test_sft_metrics_arrive_while_training(sft_run: tuple[Observed, int, Handle, Path]) -> None:
    seen, _, _, _ = sft_run
    live = [m for u in seen.updates if u.status is RemoteStatus.RUNNING for m in u.metrics]
    assert len(live) >= 8
    assert seen.final.status is RemoteStatus.SUCCEEDED, seen.final.error


def test_restart_reattaches_without_loss_or_duplicates(
    sft_run: tuple[Observed, int, Handle, Path],
) -> None:
    seen, switched_at, _, _ = sft_run
    train_steps = [m.step for m in seen.metrics if m.train_loss is not None]
    assert train_steps == list(range(1, 41))
    eval_steps = [m.step for m in seen.metrics if m.eval_loss is not None]
    assert eval_steps == [10, 20, 30, 40]
    after_restart = [m for u in seen.updates[switched_at:] for m in u.metrics]
    assert after_restart, "the second instance saw no metrics: it did not re-attach"
    assert len(set(seen.event_ids())) == len(seen.event_ids())


def test_sft_result_names_path_adapter_and_probe(
    sft_run: tuple[Observed, int, Handle, Path], tiny_model: Path,
) -> None:
    seen, _, _, _ = sft_run
    result = seen.final.result or {}
    assert result["path"] == "lora-cpu-fp32"
    assert result["loss_mask"] == "assistant_only"
    assert result["stop_reason"] == "completed"
    assert result["best_checkpoint"] and Path(result["best_checkpoint"]).is_dir()
    assert 0.0 <= result["memorization"]["verbatim_rate"] <= 1.0
    assert Path(result["trainer_state_path"]).is_file()
    assert (Path(result["adapter_path"]) / "adapter_model.safetensors").is_file()
    load_adapter(tiny_model, Path(result["adapter_path"]))
    losses = [m.train_loss for m in seen.metrics if m.train_loss is not None]
    assert sum(losses[-5:]) < sum(losses[:5]), "LoRA did not lower the training loss"
    ids = seen.event_ids()
    assert ids.index("launched") < ids.index("training-started") < ids.index("adapter-saved")


def test_resubmitting_the_same_job_returns_the_same_run(
    sft_run: tuple[Observed, int, Handle, Path], tiny_model: Path, facts_files: tuple[Path, Path],
) -> None:
    _, _, handle, root = sft_run
    again = asyncio.run(make_backend(root).submit(
        sft_spec("job-sft", tiny_model, facts_files[0], max_steps=40)))
    assert again == handle


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
    import os
    import signal

    backend = make_backend(tmp_path, kill_after_s=1.0, term_after_s=0.0)
    first = asyncio.run(backend.submit(
        sft_spec("job-a", tiny_model, facts_files[0], max_steps=5000)))
    second = asyncio.run(backend.submit(
        sft_spec("job-b", tiny_model, facts_files[0], max_steps=5000)))
    waiting = poll_once(backend, second, Observed())
    assert waiting.status is RemoteStatus.QUEUED
    assert [e.data["queue_position"] for e in waiting.events if "queue_position" in e.data] == [1]
    seen = poll_until(backend, first, Observed(), done=lambda s: len(s.metrics) >= 2)
    launch = json.loads((Path(first.state["run_dir"]) / "launch.json").read_text())
    os.kill(launch["pid"], signal.SIGKILL)
    poll_until(backend, first, seen, timeout=10)
    assert seen.final.status is RemoteStatus.FAILED
    reason = (seen.final.error or {})["message"]
    assert "killed by SIGKILL" in reason and "ended without a final status" in reason
    assert seen.metrics, "metrics written before the crash must stay"
    started = poll_once(backend, second, Observed())
    assert started.status is RemoteStatus.RUNNING
    asyncio.run(backend.cancel(second))
    cancelled = poll_until(backend, second, Observed(), timeout=30)
    assert cancelled.final.status is RemoteStatus.CANCELLED


def test_cancel_while_queued_never_starts_a_trainer(
    backend: LocalBackend, tiny_model: Path, facts_files: tuple[Path, Path],
) -> None:
    busy = occupy_slot(backend)  # a live "trainer" holds the only slot
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


def occupy_slot(backend: LocalBackend) -> subprocess.Popen[bytes]:
    """A run directory whose trainer is a plain `sleep`: as busy as a real one to the queue."""
    sleeper = subprocess.Popen(["sleep", "60"])
    run = RunDir(backend.runs_dir / "busy")
    run.path.mkdir(parents=True)
    write_json_atomic(run.spec, {"job_id": "busy"})
    run.write_status(RunState.RUNNING)
    write_json_atomic(run.launch_file, {"pid": sleeper.pid, "start_ticks": None, "slot": "cpu"})
    with backend.queue.locked():
        backend.queue.activate("busy", "cpu")
    return sleeper


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
