"""Forgetting guard: the mixed file has the right share, is reproducible, and validates."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.validation.support import chat, jsonl
from tunebridge.mixing import GENERAL_SAMPLE, general_count, mix_general
from tunebridge.validation import validate_file


def _write(path: Path, prefix: str, count: int) -> Path:
    path.write_bytes(jsonl(*[chat(f"{prefix}{n}", "ok") for n in range(count)]))
    return path


def _questions(path: Path) -> list[str]:
    return [json.loads(line)["messages"][0]["content"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize(("task", "share", "general"), [
    (100, 0.2, 25), (10, 0.2, 2), (7, 0.2, 1), (100, 0.5, 100), (100, 0.0, 0)])
def test_general_count_is_the_share_of_the_total(task: int, share: float, general: int) -> None:
    assert general_count(task, share) == general


def test_mix_has_the_share_keeps_task_order_and_is_reproducible(tmp_path: Path) -> None:
    task = _write(tmp_path / "task.jsonl", "t", 400)
    general = _write(tmp_path / "general.jsonl", "g", 1000)
    out = tmp_path / "mixed.jsonl"
    result = mix_general(task, out, general=general, seed=7)
    assert (result.task_examples, result.general_examples, result.total) == (400, 100, 500)
    assert result.share == pytest.approx(0.2) and result.general_passes == 1
    questions = _questions(out)
    picked = [q for q in questions if q.startswith("g")]
    assert [q for q in questions if q.startswith("t")] == [f"t{n}" for n in range(400)]
    assert len(picked) == len(set(picked)) == 100
    assert questions[:100] != [f"t{n}" for n in range(100)], "general lines are interleaved"
    again = tmp_path / "again.jsonl"
    mix_general(task, again, general=general, seed=7)
    assert again.read_bytes() == out.read_bytes()
    mix_general(task, again, general=general, seed=8)
    assert again.read_bytes() != out.read_bytes()
    report = validate_file(out, backend="openai")
    assert report.ok and report.num_examples == 500


def test_selection_is_spread_over_the_whole_general_file(tmp_path: Path) -> None:
    task = _write(tmp_path / "task.jsonl", "t", 4000)
    general = _write(tmp_path / "general.jsonl", "g", 2000)
    mix_general(task, tmp_path / "out.jsonl", general=general, seed=1)
    picked = [int(q[1:]) for q in _questions(tmp_path / "out.jsonl") if q.startswith("g")]
    halves = Counter(n < 1000 for n in picked)
    assert len(picked) == 1000 and 400 < halves[True] < 600


def test_default_sample_is_reused_when_the_task_set_is_large(tmp_path: Path) -> None:
    task = _write(tmp_path / "task.jsonl", "t", 400)
    out = tmp_path / "mixed.jsonl"
    result = mix_general(task, out)
    assert result.general_available == 40 and result.general_examples == 100
    assert result.general_passes == 3
    report = validate_file(out, backend="openai", model="gpt-4o-mini-2024-07-18")
    assert report.ok, [p.as_dict() for p in report.errors]
    assert report.num_examples == 500 and report.duplicates == 60


def test_shipped_general_sample_is_clean_chat_data() -> None:
    sample = Path(__file__).parents[2] / "tunebridge" / "mixing" / GENERAL_SAMPLE
    report = validate_file(sample, backend="openai", model="gpt-4o-mini-2024-07-18")
    assert report.problems == [] and report.num_examples >= 30


def test_failed_mix_keeps_the_previous_output_and_leaves_no_temp_file(tmp_path: Path) -> None:
    task = _write(tmp_path / "task.jsonl", "t", 10)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n")
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"previous")
    with pytest.raises(ValueError, match="no examples"):
        mix_general(task, out, general=empty)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.jsonl", "out.jsonl", "task.jsonl"]
