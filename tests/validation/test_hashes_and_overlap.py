"""The bounded hash index (exact, then sampled) and train/validation overlap."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.validation.support import chat, jsonl
from tunebridge.validation import find_overlap
from tunebridge.validation.hashes import HashIndex, record_hash


def test_index_is_exact_below_its_cap_and_grows() -> None:
    index = HashIndex(max_slots=1 << 16)
    values = [record_hash({"n": n}) for n in range(20_000)]
    assert all(index.add(v, line) is None for line, v in enumerate(values, start=1))
    assert index.exact and index.size == 20_000 and index.nbytes == 12 * (1 << 16)
    assert [index.add(values[n], 99_999) for n in (0, 12_345)] == [1, 12_346]
    assert index.get(record_hash({"n": -1})) is None


def test_index_samples_past_its_cap_without_false_duplicates() -> None:
    index = HashIndex(max_slots=1 << 10)
    values = [record_hash({"n": n}) for n in range(50_000)]
    for line, value in enumerate(values, start=1):
        assert index.add(value, line) is None  # distinct values are never called duplicates
    assert not index.exact and index.nbytes == 12 * 1024 and index.size <= 512
    kept = [line for line, v in enumerate(values, start=1) if index.tracked(v)]
    assert kept, "some fraction stays tracked"
    assert all(index.get(values[line - 1]) == line for line in kept)


def test_record_hash_ignores_key_order_but_not_content() -> None:
    assert record_hash({"a": 1, "b": [1, 2]}) == record_hash({"b": [1, 2], "a": 1})
    assert record_hash({"a": 1}) != record_hash({"a": 2})


def test_max_slots_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError):
        HashIndex(max_slots=3000)


def test_overlap_counts_both_sides_with_line_pairs(tmp_path: Path) -> None:
    shared = [chat(f"q{n}", "a") for n in range(3)]
    train = tmp_path / "train.jsonl"
    valid = tmp_path / "valid.jsonl"
    train.write_bytes(jsonl(chat("t0"), shared[0], chat("t1"), shared[1], shared[0], "", "{bad"))
    valid.write_bytes(jsonl(chat("v0"), shared[1], shared[0], shared[2]))
    result = find_overlap(train, valid)
    assert (result.train_examples, result.validation_examples) == (5, 4)
    assert (result.train_in_validation, result.validation_in_train) == (3, 2)
    assert result.pairs == [(2, 3), (4, 2), (5, 3)]
    problem = result.problem
    assert problem is not None and problem.severity == "warning"
    assert (problem.code, problem.line) == ("train_validation_overlap", 2)
    assert "3 of 5 training examples" in problem.message
    assert "2 of 4 validation examples" in problem.message


def test_no_overlap_no_problem(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_bytes(jsonl(chat("a"), chat("b")))
    (tmp_path / "v.jsonl").write_bytes(jsonl(chat("c")))
    result = find_overlap(tmp_path / "t.jsonl", tmp_path / "v.jsonl")
    assert result.problem is None and result.as_dict()["train_in_validation"] == 0
