"""File formats: HF trainer_state.json, our metrics JSONL, OpenAI step-metrics CSV."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tunebridge.errors import InvalidInput
from tunebridge.health import (
    MetricSeries,
    MetricsFormat,
    Objective,
    analyze_file,
    analyze_text,
    detect_format,
    load_series,
    parse_series,
)

OVERFIT_EVALS = [(100, 1.2), (200, 0.9), (300, 0.8), (400, 0.78), (500, 0.8), (600, 0.85),
                 (700, 0.9), (800, 0.96)]


def trainer_state() -> dict[str, object]:
    history: list[dict[str, object]] = []
    for step in range(10, 801, 10):
        history.append({"epoch": step / 400, "step": step, "loss": 2.0 * 0.995 ** step,
                        "grad_norm": 1.0, "learning_rate": 1e-4})
        evals = dict(OVERFIT_EVALS)
        if step in evals:
            history.append({"epoch": step / 400, "step": step, "eval_loss": evals[step],
                            "eval_runtime": 1.0})
    history.append({"epoch": 2.0, "step": 800, "train_loss": 9.9, "train_runtime": 12.0,
                    "total_flos": 1.0})
    return {"global_step": 800, "max_steps": 800, "log_history": history}


def test_trainer_state_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps(trainer_state()))
    series = load_series(path)
    assert series.total_steps == 800
    assert len(series.finite("train_loss")) == 80  # the end-of-run summary is not a log
    assert max(v for _, v in series.finite("train_loss")) < 2.0
    assert len(series.finite("eval_loss")) == 8
    assert series.epoch_at(400) == 1.0


def test_analyze_file_prints_exactly_the_json_shape(tmp_path: Path) -> None:
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps(trainer_state()))
    result = analyze_file(path)
    assert set(result) == {"findings", "best_eval_step"}
    assert result["best_eval_step"] == 400
    assert [f["kind"] for f in result["findings"]] == ["overfitting"]
    finding = result["findings"][0]
    assert set(finding) == {"kind", "step", "severity", "message", "fixes"}
    assert isinstance(finding["step"], int) and finding["severity"] in ("warning", "critical")
    assert "\n" not in finding["message"] and all(isinstance(f, str) for f in finding["fixes"])
    assert json.loads(json.dumps(result)) == result


def test_nan_in_trainer_state_is_kept() -> None:
    text = '{"max_steps": 20, "log_history": [{"step": 10, "loss": NaN, "grad_norm": Infinity}]}'
    series = parse_series(text)
    assert math.isnan(series.column("train_loss")[0][1])
    assert math.isinf(series.column("grad_norm")[0][1])
    assert analyze_text(text)["findings"][0]["kind"] == "diverging"


def test_jsonl_with_either_loss_key_and_nan() -> None:
    lines = [
        {"step": 1, "epoch": 0.1, "loss": 2.0, "grad_norm": 1.0, "learning_rate": 1e-4},
        {"step": 2, "epoch": 0.2, "train_loss": 1.8},
        {"step": 2, "eval_loss": 1.9},
        {"step": 3, "train_loss": "NaN", "total_steps": 10},
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\n\n"
    assert detect_format(text) is MetricsFormat.JSONL
    series = parse_series(text)
    assert [s for s, _ in series.column("train_loss")] == [1, 2, 3]
    assert math.isnan(series.column("train_loss")[-1][1])
    assert series.finite("eval_loss") == [(2, 1.9)]
    assert series.total_steps == 10


def test_jsonl_error_names_the_line() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_series('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": \n')
    assert caught.value.code == "invalid_jsonl"
    assert caught.value.problems[0].line == 2


def test_openai_csv_real_header_and_empty_cells() -> None:
    text = ("step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n"
            "1,2.1,0.4,,\n2,1.9,0.45,2.0,0.44\n3,1.7,0.5,,\n")
    assert detect_format(text) is MetricsFormat.OPENAI_CSV
    series = parse_series(text)
    assert series.finite("train_loss") == [(1, 2.1), (2, 1.9), (3, 1.7)]
    assert series.finite("eval_loss") == [(2, 2.0)]


def test_openai_csv_prefers_full_valid_loss_when_it_has_enough_points() -> None:
    header = ("step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy,"
              "full_valid_loss,full_valid_mean_token_accuracy\n")
    rows = "".join(f"{s},1.0,0.5,{1 + s / 100},0.5,{0.5 + s / 1000 if s % 10 == 0 else ''},\n"
                   for s in range(1, 31))
    series = parse_series(header + rows)
    assert series.finite("eval_loss") == [(10, 0.51), (20, 0.52), (30, 0.53)]


def test_unknown_or_empty_input_is_a_user_error() -> None:
    for text in ("", "hello world\n"):
        with pytest.raises(InvalidInput):
            parse_series(text)


def test_rl_keys_mark_the_objective() -> None:
    text = "\n".join(json.dumps({"step": s, "loss": 0.01, "reward": 0.5, "kl": 0.1})
                     for s in range(1, 5))
    assert parse_series(text).objective is Objective.REINFORCEMENT


def test_storage_rows_with_nonfinite_extras() -> None:
    rows = [{"step": 1, "train_loss": 1.0},
            {"step": 2, "train_loss": None, "extra": {"nonfinite_train_loss": "nan"}}]
    series = MetricSeries.from_rows(rows)
    assert math.isnan(series.column("train_loss")[1][1])
