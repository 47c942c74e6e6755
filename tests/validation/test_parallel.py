"""Parallel validation gives the serial report: same lines, codes, counts and statistics."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from tests.validation.support import chat, jsonl, msgs
from tunebridge.validation import ValidationOptions, validate_file_parallel, validate_stream


def _messy_file(path: Path, lines: int) -> Path:
    rng = random.Random(3)
    bad: list[Any] = ["", "{oops", "[1]", msgs(("user", "q")), chat("q", ""), {"text": "t"},
                      b'{"text": "\xff"}', chat(extra=1)]
    items: list[Any] = [b"\xef\xbb\xbf" + jsonl(chat("first")).rstrip(b"\n")]
    for n in range(lines):
        roll = rng.random()
        if roll < 0.1:
            items.append(rng.choice(bad))
        elif roll < 0.2:
            items.append(chat(f"dup{rng.randrange(20)}"))  # duplicates within and across ranges
        else:
            items.append(chat(f"q{n}", "answer " * rng.randrange(1, 30)))
    path.write_bytes(jsonl(*items))
    return path


def _comparable(report: Any) -> dict[str, Any]:
    """Everything but duplicate messages, which may cite a later copy of the same example."""
    data = report.as_dict()
    data["problems"] = [{k: v for k, v in p.items() if not (p["code"] == "duplicate_example"
                                                             and k == "message")}
                        for p in data["problems"]]
    return data


def test_parallel_report_equals_the_serial_one(tmp_path: Path) -> None:
    path = _messy_file(tmp_path / "messy.jsonl", 3000)
    options = ValidationOptions(backend="openai", model="gpt-3.5-turbo", max_reported=400)
    serial = validate_stream(path.open("rb"), options)
    parallel = validate_file_parallel(path, options, workers=2, min_bytes=0)
    assert _comparable(parallel) == _comparable(serial)
    assert serial.duplicates > 100 and serial.warning_counts["blank_line"] > 10
    assert serial.tokens is not None and serial.tokens.examples > 2000


def test_cross_range_duplicates_cite_an_earlier_identical_line(tmp_path: Path) -> None:
    path = tmp_path / "dups.jsonl"
    path.write_bytes(jsonl(*[chat(f"q{n % 50}") for n in range(400)]))
    report = validate_file_parallel(path, ValidationOptions(max_reported=1000), workers=4,
                                    min_bytes=0)
    assert report.duplicates == 350 and len(report.problems) == 350
    for problem in report.problems:
        earlier = int(problem.message.split("duplicates line ")[1].rstrip("."))
        assert earlier < problem.line and (problem.line - earlier) % 50 == 0  # type: ignore[operator]


def test_small_files_and_custom_tokenizers_stay_serial(tmp_path: Path) -> None:
    path = tmp_path / "small.jsonl"
    path.write_bytes(jsonl(chat(), "{bad"))
    report = validate_file_parallel(path, ValidationOptions(), workers=8)
    assert [(p.code, p.line) for p in report.problems] == [("invalid_json", 2)]


def test_inside_a_threaded_process_workers_are_spawned_and_agree(tmp_path: Path) -> None:
    """Forking beside other threads is unsafe (the server's case): spawned workers load their
    own tokenizer and must still give the serial report."""
    import threading

    path = _messy_file(tmp_path / "messy.jsonl", 600)
    options = ValidationOptions(backend="openai", model="gpt-4o-mini", max_reported=400)
    serial = validate_stream(path.open("rb"), options)
    stop = threading.Event()
    neighbour = threading.Thread(target=stop.wait, daemon=True)
    neighbour.start()
    try:
        parallel = validate_file_parallel(path, options, workers=2, min_bytes=0)
    finally:
        stop.set()
    assert _comparable(parallel) == _comparable(serial)
