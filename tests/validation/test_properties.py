"""Property tests: arbitrary input never raises, and chunking never changes the verdict."""

from __future__ import annotations

import json
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.validation.support import chat, jsonl  # noqa: E402
from tunebridge.tokens import ChatOverhead, local_counter  # noqa: E402
from tunebridge.validation import (  # noqa: E402
    StreamingValidator,
    ValidationOptions,
    validate_bytes,
)

WORDS = local_counter(lambda text: len(text.split()), ChatOverhead())
OPTIONS = ValidationOptions(backend="openai", counter=WORDS, context=50, max_reported=20)

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["role", "content", "messages", "weight", "tool_calls", "name", "text",
                         "prompt", "chosen", "rejected", "input", "preferred_output",
                         "non_preferred_output", "completion", "tools", "type", "function"]),
        inner, max_size=4),
    max_leaves=12)


def _verdict_holds(report: Any) -> None:
    assert report.ok == (report.error_count == 0)
    assert report.ok or any(p.severity == "error" for p in report.problems)
    assert len(report.problems) <= OPTIONS.max_reported
    assert sum(report.counts.values()) >= len(report.problems)
    json.dumps(report.as_dict())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    _verdict_holds(validate_bytes(data, OPTIONS))


@settings(max_examples=200, deadline=None)
@given(st.lists(_json, min_size=1, max_size=6))
def test_arbitrary_json_records_never_raise(records: list[Any]) -> None:
    _verdict_holds(validate_bytes(jsonl(*[json.dumps(r) for r in records]), OPTIONS))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([jsonl(chat()), b"\n", b"{oops\n", jsonl(chat("q", "")),
                                 b"\xff\xfe\n", b'{"text": 1}\n', jsonl(chat("a" * 40))]),
                max_size=12),
       st.integers(min_value=1, max_value=50))
def test_chunking_never_changes_the_report(lines: list[bytes], chunk: int) -> None:
    data = b"".join(lines)
    validator = StreamingValidator(OPTIONS)
    for start in range(0, len(data), chunk):
        validator.feed(data[start:start + chunk])
    assert validator.finish().as_dict() == validate_bytes(data, OPTIONS).as_dict()


_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "developer", "tool", "bot"])},
    optional={"content": st.sampled_from(["", " \n", "hi", "a b", None, 3, ["x"]]),
              "weight": st.sampled_from([0, 1]), "name": st.just("n")})


@given(st.lists(_message, max_size=6), st.booleans())
@settings(max_examples=400, deadline=None)
def test_plain_chat_fast_path_never_hides_a_problem(messages: list[dict[str, Any]],
                                                     extra_key: bool) -> None:
    from tunebridge.validation.records import all_record_problems, plain_chat_is_clean

    record: dict[str, Any] = {"messages": messages} | ({"tools": []} if extra_key else {})
    if plain_chat_is_clean(record):
        assert list(all_record_problems(record, "chat", 1)) == []
        assert WORDS.plain_messages(messages) == WORDS.messages(messages)


@given(st.lists(st.sampled_from(["good", "long", "dup", "bad", "blank", "sys"]), max_size=60),
       st.integers(min_value=1, max_value=300))
@settings(max_examples=60, deadline=None)
def test_counting_threads_give_the_inline_report(kinds: list[str], batch_chars: int) -> None:
    """Deferred counts resolve in line order: same problems, same order, same statistics."""
    lines = {"good": chat("q", "answer"), "long": chat("q", "word " * 40), "dup": chat(),
             "bad": "{oops", "blank": "", "sys": {"messages": [
                 {"role": "system", "content": "You are terse and exact."},
                 {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}}
    data = jsonl(*[lines[k] for k in kinds])
    base: dict[str, Any] = {"backend": "openai", "model": "gpt-4o-mini", "context": 30,
                            "max_reported": 25}
    inline = validate_bytes(data, ValidationOptions(**base, token_threads=0))
    threaded = validate_bytes(data, ValidationOptions(**base, token_threads=2,
                                                      token_batch_chars=batch_chars))
    assert threaded.as_dict() == inline.as_dict()
    assert [p.as_dict() for p in threaded.problems] == [p.as_dict() for p in inline.problems]
