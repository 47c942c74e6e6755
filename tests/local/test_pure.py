"""Pure helpers of the local backend: no torch, no subprocesses, milliseconds each."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from backends.base import BackendError, RemoteStatus
from backends.local.backend import Cursor, run_id_for
from backends.local.data import DataError, prepare_dpo, prepare_sft, probe_pairs, split_holdout
from backends.local.engine import CPU_LORA, QLORA, UNSLOTH, EngineError, choose_path
from backends.local.hyperparams import (
    HyperparameterError,
    default_eval_steps,
    planned_steps,
    resolve,
)
from backends.local.metrics import non_finite, read_jsonl_from, to_sample
from backends.local.process import describe_exit
from backends.local.queue import RunQueue
from backends.local.runs import RunState

CHAT = {"messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": "2+2?"},
                     {"role": "assistant", "content": "4"}]}


def test_sft_defaults_come_from_the_seed() -> None:
    values = resolve("sft", {}).values
    assert values["learning_rate"] == 2e-4 and values["warmup_ratio"] == 0.03
    assert values["weight_decay"] == 0.01 and values["lora_r"] == 16
    assert values["lora_alpha"] == 16 and values["lora_dropout"] == 0.0
    assert 1 <= values["n_epochs"] <= 3


def test_dpo_defaults_and_alpha_follows_rank() -> None:
    values = resolve("dpo", {"lora_r": 32, "learning_rate": "auto"}).values
    assert values["learning_rate"] == 5e-6 and values["beta"] == 0.1
    assert values["n_epochs"] == 1 and values["lora_alpha"] == 32


def test_hyperparameters_are_coerced_and_checked() -> None:
    resolved = resolve("sft", {"n_epochs": "3", "batch_size": 8.0, "colour": "red"}, seed=7)
    assert resolved.values["n_epochs"] == 3 and resolved.values["batch_size"] == 8
    assert resolved.values["seed"] == 7 and resolved.ignored == ("colour",)
    for bad in ({"batch_size": 2.5}, {"learning_rate": -1}, {"lora_dropout": 1.5},
                {"n_epochs": True}, {"warmup_ratio": "lots"}):
        with pytest.raises(HyperparameterError):
            resolve("sft", bad)
    with pytest.raises(HyperparameterError):
        resolve("grpo", {})


def test_planned_steps_match_trainer_arithmetic() -> None:
    values = resolve("sft", {"batch_size": 4, "n_epochs": 3}).values
    assert planned_steps(10, values) == 9  # ceil(10/4)=3 batches per epoch
    accum = resolve("sft", {"batch_size": 4, "gradient_accumulation_steps": 2}).values
    assert planned_steps(10, accum) == 4  # 3 batches -> 2 updates per epoch, 2 epochs
    assert planned_steps(10, {**values, "max_steps": 5}) == 5
    assert default_eval_steps(150) == 15 and default_eval_steps(3) == 1


def test_reader_leaves_a_partial_last_line_for_the_next_poll(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    first = read_jsonl_from(path, 0)
    assert [r["step"] for r in first.records] == [1]
    with path.open("ab") as fh:
        fh.write(b'ss": 1.5}\nnot json\n')
    second = read_jsonl_from(path, first.next_offset)
    assert [r["step"] for r in second.records] == [2]
    assert second.next_offset == path.stat().st_size
    assert read_jsonl_from(tmp_path / "missing", 7).next_offset == 7


def test_log_records_become_samples() -> None:
    train = to_sample({"step": 3, "epoch": 0.5, "kind": "train", "loss": 1.2, "grad_norm": 0.4,
                       "learning_rate": 1e-4, "mean_token_accuracy": 0.6, "entropy": 2.0})
    assert train is not None and train.train_loss == 1.2 and train.token_accuracy == 0.6
    assert train.extra == {"entropy": 2.0} and train.epoch == 0.5
    evaluation = to_sample({"step": 4, "eval_loss": 1.5, "eval_mean_token_accuracy": 0.5,
                            "eval_runtime": 0.1, "eval_rewards/margins": 0.2})
    assert evaluation is not None and evaluation.eval_loss == 1.5
    assert evaluation.eval_token_accuracy == 0.5
    assert evaluation.extra == {"eval_rewards/margins": 0.2}
    assert to_sample({"step": 5, "kind": "train"}) is None
    assert to_sample({"loss": 1.0}) is None


def test_non_finite_values_are_named() -> None:
    assert non_finite({"loss": 1.0, "grad_norm": math.nan}) == "grad_norm"
    assert non_finite({"loss": math.inf}) == "loss"
    assert non_finite({"loss": 1.0, "grad_norm": 3.0}) is None


def test_chat_loss_mask_depends_on_the_template() -> None:
    marked = prepare_sft([CHAT], template_marks_generation=True)
    assert marked.loss_mask == "assistant_only" and marked.rows == [CHAT]
    plain = prepare_sft([CHAT], template_marks_generation=False)
    assert plain.loss_mask == "last_assistant_turn"
    assert plain.rows[0]["completion"] == [{"role": "assistant", "content": "4"}]
    assert [m["role"] for m in plain.rows[0]["prompt"]] == ["system", "user"]
    pc = prepare_sft([{"prompt": "a", "completion": "b", "extra": 1}], False)
    assert pc.loss_mask == "completion_only" and pc.rows == [{"prompt": "a", "completion": "b"}]
    assert prepare_sft([{"text": "t"}], False).loss_mask == "full_text"


def test_sft_rejects_unusable_data() -> None:
    with pytest.raises(DataError, match="mixed"):
        prepare_sft([CHAT, {"text": "t"}], False)
    with pytest.raises(DataError, match="assistant"):
        prepare_sft([{"messages": [{"role": "user", "content": "hi"}]}], False)
    with pytest.raises(DataError, match="dpo"):
        prepare_sft([{"prompt": "p", "chosen": "c", "rejected": "r"}], False)


def test_openai_preference_rows_become_trl_rows() -> None:
    row = {"input": {"messages": [{"role": "user", "content": "hi"}]},
           "preferred_output": [{"role": "assistant", "content": "hello"}],
           "non_preferred_output": [{"role": "assistant", "content": "go away"}]}
    prepared = prepare_dpo([row])
    assert prepared.rows == [{"prompt": row["input"]["messages"],  # type: ignore[index]
                              "chosen": row["preferred_output"],
                              "rejected": row["non_preferred_output"]}]
    trl_row = {"prompt": "p", "chosen": "c", "rejected": "r", "score": 3}
    assert prepare_dpo([trl_row]).rows == [{"prompt": "p", "chosen": "c", "rejected": "r"}]
    with pytest.raises(DataError):
        prepare_dpo([CHAT])


def test_holdout_and_probe_pairs_are_seeded() -> None:
    rows = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(10)]
    train, held = split_holdout(rows, 0.2, seed=1)
    assert len(held) == 2 and len(train) == 8 and split_holdout(rows, 0.2, seed=1)[1] == held
    assert split_holdout(rows[:2], 0.9, seed=1)[0], "never hold out everything"
    pairs = probe_pairs(rows, 3, seed=0)
    assert len(pairs) == 3 and all(p[1] == "a" + p[0][1:] for p in pairs)
    assert probe_pairs([CHAT], 5, seed=0) == [(CHAT["messages"][:2], "4")]


def test_engine_choice() -> None:
    assert choose_path("auto", cuda_available=False, unsloth_installed=True) == CPU_LORA
    assert choose_path("auto", cuda_available=True, unsloth_installed=False) == QLORA
    assert choose_path("auto", cuda_available=True, unsloth_installed=True) == UNSLOTH
    assert choose_path("hf", cuda_available=True, unsloth_installed=True) == QLORA
    for requested, cuda, unsloth in (("unsloth", False, True), ("unsloth", True, False),
                                     ("tpu", True, True)):
        with pytest.raises(EngineError):
            choose_path(requested, cuda, unsloth)


def test_cursor_round_trip_and_run_ids() -> None:
    assert Cursor.decode(Cursor(10, 20, 3).encode()) == Cursor(10, 20, 3)
    assert Cursor.decode(None) == Cursor()
    with pytest.raises(BackendError):
        Cursor.decode("garbage")
    assert run_id_for("job/1 x") == run_id_for("job/1 x") != run_id_for("job_1_x")
    assert "/" not in run_id_for("job/1 x")


def test_states_map_to_remote_statuses() -> None:
    assert RunState.LOADING.remote() is RemoteStatus.RUNNING
    assert RunState.QUEUED.remote() is RemoteStatus.QUEUED
    assert RunState.CANCELLED.terminal and not RunState.RUNNING.terminal
    assert RunState.LAUNCHING.active and not RunState.QUEUED.active
    # Handed to Ray, not started: Ray must be asked about it (active), the user sees queued.
    assert RunState.PLACING.active and RunState.PLACING.remote() is RemoteStatus.QUEUED


def test_exit_descriptions() -> None:
    assert "SIGKILL" in describe_exit(-9) and "memory" in describe_exit(-9)
    assert describe_exit(1) == "exit code 1"
    assert "unknown" in describe_exit(None)


def test_queue_is_fifo_with_positions(tmp_path: Path) -> None:
    queue = RunQueue(tmp_path, ["0", "1"])
    with queue.locked():
        for seq, run_id in ((3, "c"), (1, "a"), (2, "b-with-dash")):
            queue.enqueue(run_id, seq)
        assert queue.waiting() == ["a", "b-with-dash", "c"]
        assert queue.position("c") == 3 and queue.position("zzz") is None
        queue.activate("a", "1")
        assert queue.free_slots() == ["0"] and queue.position("b-with-dash") == 1
        queue.dequeue("b-with-dash")
        queue.release("a")
        assert queue.waiting() == ["c"] and queue.free_slots() == ["0", "1"]
    assert json.loads(Cursor().encode())["m"] == 0
