"""Report behaviour beyond single codes: offsets, truncation, chunking, statistics, formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.validation.support import chat, check, jsonl, located, msgs
from tunebridge.tokens import ChatOverhead, local_counter
from tunebridge.validation import (
    CHAT,
    PREFERENCE,
    PREFERENCE_OPENAI,
    PROMPT_COMPLETION,
    TEXT,
    StreamingValidator,
    ValidationOptions,
    count_file_tokens,
)

WORDS = local_counter(lambda text: len(text.split()), ChatOverhead(0, 0, 0, 0))


def test_not_utf8_gives_line_column_and_file_byte_offset() -> None:
    first = jsonl(chat())
    data = first + b'{"text": "caf\xe9"}\n'
    report = check(data)
    problem = next(p for p in report.problems if p.code == "not_utf8")
    assert (problem.line, problem.column) == (2, 14)
    assert f"byte offset {len(first) + 13} " in problem.message


def test_bom_is_reported_and_the_first_line_still_validated() -> None:
    report = check(b"\xef\xbb\xbf" + jsonl(msgs(("user", "q"))))
    assert located(report) >= {("bom", 1), ("no_assistant_message", 1)}


def test_first_problems_in_full_the_rest_counted() -> None:
    data = jsonl(*[chat(extra=n) for n in range(250)])
    report = check(data, max_reported=100)
    assert len(report.problems) == 100
    assert [p.line for p in report.problems] == list(range(1, 101))
    assert report.error_counts["unknown_key"] == 250
    assert report.as_dict()["problems_truncated"] is True
    assert report.num_examples == 250 and not report.ok


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 4096])
def test_chunk_boundaries_never_change_the_report(chunk: int) -> None:
    data = (b"\xef\xbb\xbf" + jsonl(chat(), "", '{"bad', chat(), chat("x", ""), "[1]")
            + b'{"text": "\xff"}\r\n' + jsonl(chat("a", "b")).rstrip(b"\n"))
    whole = check(data).as_dict()
    validator = StreamingValidator(ValidationOptions())
    for start in range(0, len(data), chunk):
        validator.feed(data[start:start + chunk])
    assert validator.finish().as_dict() == whole
    assert whole["num_lines"] == 8 and whole["num_bytes"] == len(data)


def test_crlf_and_a_missing_final_newline_are_fine() -> None:
    data = jsonl(chat(), chat("b", "c")).replace(b"\n", b"\r\n").rstrip(b"\r\n")
    report = check(data)
    assert report.problems == [] and report.num_examples == 2 and report.num_lines == 2


VALID = {
    CHAT: [chat(), {"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "assistant", "content": [{"type": "text", "text": "Sunny."}], "weight": 1}],
        "tools": [{"type": "function", "function": {"name": "weather"}}],
        "parallel_tool_calls": False},
        {"messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "c2", "type": "function",
                                                                 "function": {"name": "weather",
                                                                              "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c2", "content": "rain"},
            {"role": "assistant", "content": "Rain.", "weight": 0},
            {"role": "user", "content": "Thanks"}, {"role": "assistant", "content": "Welcome."}]}],
    PREFERENCE_OPENAI: [{"input": {"messages": [{"role": "user", "content": "Hi"}]},
                         "preferred_output": [{"role": "assistant", "content": "Hello!"}],
                         "non_preferred_output": [{"role": "assistant", "content": "No."}]}],
    PREFERENCE: [{"prompt": "Hi", "chosen": "Hello!", "rejected": "No."},
                 {"prompt": [{"role": "user", "content": "Hi"}],
                  "chosen": [{"role": "assistant", "content": "Hello!"}],
                  "rejected": [{"role": "assistant", "content": "No."}]}],
    PROMPT_COMPLETION: [{"prompt": "2+2=", "completion": "4"}],
    TEXT: [{"text": "Once upon a time."}],
}


@pytest.mark.parametrize("fmt", sorted(VALID))
def test_every_format_has_a_clean_valid_file(fmt: str) -> None:
    report = check(jsonl(*VALID[fmt]), backend="local", counter=WORDS)
    assert report.problems == [], [p.as_dict() for p in report.problems]
    assert report.format == fmt and report.num_examples == len(VALID[fmt])
    assert report.method == ("dpo" if fmt.startswith("preference") else "sft")
    assert report.tokens is not None and report.tokens.examples == len(VALID[fmt])


def test_token_statistics_with_a_pluggable_tokenizer() -> None:
    # Word counts: role (1) + content words; lengths 3..12 for answers of 1..10 words.
    examples = [chat("q", " ".join(["w"] * n)) for n in range(1, 11)]
    report = check(jsonl(*examples), backend="local", counter=WORDS, context=10)
    stats = report.tokens
    assert stats is not None
    assert (stats.minimum, stats.maximum, stats.total) == (4, 13, sum(range(4, 14)))
    assert (stats.percentile(50), stats.percentile(95)) == (8, 13)
    assert stats.over_limit == 3
    assert stats.billed_tokens(epochs=3) == 3 * (sum(range(4, 11)) + 3 * 10)
    assert located(report) >= {("too_many_tokens", 8), ("too_many_tokens", 10)}
    assert report.as_dict()["tokens"]["p95"] == 13


def test_openai_model_counts_with_chat_overhead_offline() -> None:
    # o200k: "user", "assistant" and "hello world" are 1, 1 and 2 tokens; 3 per message + 3.
    record = chat("hello world", "hello world")
    report = check(jsonl(*[record] * 10), backend="openai", model="gpt-4o-mini-2024-07-18")
    assert report.tokens is not None
    assert report.tokens.as_dict() | {"context": None} == {
        "examples": 10, "min": 15, "p50": 15, "p95": 15, "max": 15, "total": 150,
        "context": None, "over_limit": 0, "billed_tokens_per_epoch": 150}
    assert report.tokens.context == 65_536


def test_examples_with_errors_are_not_counted_and_local_without_tokenizer_has_no_stats() -> None:
    data = jsonl(chat(), msgs(("user", "q")))
    assert check(data, counter=WORDS).tokens.examples == 1  # type: ignore[union-attr]
    assert check(data, backend="local", model="some/local-model").tokens is None


def test_duplicates_ignore_key_order_and_whitespace() -> None:
    first = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    reordered = '{ "messages" : [ {"content": "q", "role": "user"}, ' \
                '{"content": "a", "role": "assistant"} ] }'
    report = check(jsonl(first, chat("x", "y"), reordered, first))
    duplicates = [p for p in report.problems if p.code == "duplicate_example"]
    assert [(p.line, p.message) for p in duplicates] == [
        (3, "Line 3 duplicates line 1."), (4, "Line 4 duplicates line 1.")]
    assert report.duplicates == 2 and report.ok


def test_as_dict_is_json_and_separates_errors_from_warnings() -> None:
    report = check(jsonl(chat(), "", "{"))
    payload = json.loads(json.dumps(report.as_dict()))
    assert payload["error_counts"] == {"invalid_json": 1}
    assert payload["warning_counts"] == {"blank_line": 1}
    assert payload["counts"] == {"blank_line": 1, "invalid_json": 1}
    assert payload["ok"] is False and payload["format"] == CHAT


def test_openai_backend_accepts_its_formats_and_needs_ten_examples() -> None:
    assert check(jsonl(*[chat(str(n)) for n in range(10)]), backend="openai").problems == []
    report = check(jsonl(*[{"prompt": "p", "completion": str(n)} for n in range(10)]),
                   backend="openai")
    assert located(report) == {("format_not_supported", 1)}


def test_count_file_tokens_matches_validation_stats_for_a_later_model(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(jsonl(*[chat("q", " ".join(["w"] * n)) for n in range(1, 11)], "", "{x"))
    stats = count_file_tokens(path, WORDS, context=10)
    reported = check(path.read_bytes(), counter=WORDS, context=10).tokens
    assert reported is not None and stats.as_dict() == reported.as_dict()
    assert stats.billed_per_epoch == sum(range(4, 11)) + 3 * 10
