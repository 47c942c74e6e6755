"""A corpus of broken files: each names the exact code, line, column and field it must produce
(column None: the check has no column to give), and for some a phrase of the message that
carries a location (byte offset, the earlier duplicate's line)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.validation.support import Item, chat, check, jsonl, msgs
from tunebridge import validation
from tunebridge.validation.codes import CODES, WARNINGS

GOOD = chat()
CALL = {"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
PREF_IN = {"messages": [{"role": "user", "content": "Say hi"}]}
ANSWER_A = [{"role": "assistant", "content": "Hi!"}]
ANSWER_B = [{"role": "assistant", "content": "Go away."}]


@dataclass
class Case:
    name: str
    items: list[Item]
    code: str
    line: int | None
    field: str | None = None
    severity: str = "error"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    column: int | None = None
    says: str | None = None  # a phrase the message must contain


def _bad_message(message: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "q"}, message], **extra}


CASES = [
    Case("bom", [b"\xef\xbb\xbf" + jsonl(GOOD).strip(), GOOD], "bom", 1, column=1),
    Case("not_utf8_latin1", [GOOD, b'{"text": "caf\xe9"}'], "not_utf8", 2, column=14,
         says=f"byte offset {len(jsonl(GOOD)) + 13} of the file"),
    Case("not_utf8_first_byte", [b"\x80" + jsonl(GOOD).strip()], "not_utf8", 1, column=1,
         says="byte offset 0 of the file"),
    Case("not_utf8_truncated_sequence", [GOOD, GOOD, b'{"text": "\xe6\x9d"}'], "not_utf8", 3,
         column=11, says=f"byte offset {2 * len(jsonl(GOOD)) + 10} of the file"),
    Case("invalid_json", [GOOD, GOOD, '{"messages": [}'], "invalid_json", 3, column=15),
    Case("trailing_comma", [GOOD, '{"text": "a",}'], "invalid_json", 2, column=13),
    Case("single_quotes", ["{'text': 'a'}"], "invalid_json", 1, column=2),
    Case("nan_literal", [{"text": "a"}, '{"text": NaN}'], "invalid_json", 2, column=10),
    Case("unterminated_string", [GOOD, '{"messages": "abc'], "invalid_json", 2, column=18),
    Case("not_object_array", [GOOD, "[1, 2]"], "not_object", 2, column=1),
    Case("not_object_string", ['"hello"', GOOD], "not_object", 1, column=1),
    Case("not_object_null", [GOOD, GOOD, "null"], "not_object", 3, column=1),
    Case("unknown_format", [GOOD, {"question": "q", "answer": "a"}], "unknown_format", 2),
    Case("empty_messages", [GOOD, {"messages": []}], "missing_messages", 2, "messages"),
    Case("messages_not_list", [{"messages": "hi"}], "missing_messages", 1, "messages"),
    Case("messages_null", [GOOD, {"messages": None}], "missing_messages", 2, "messages"),
    Case("message_not_object", [GOOD, {"messages": ["hi"]}], "message_not_object", 2,
         "messages[0]"),
    Case("unknown_top_key", [GOOD, chat(extra=1)], "unknown_key", 2, "extra"),
    Case("unknown_message_key", [_bad_message({"role": "assistant", "content": "a", "x": 1})],
         "unknown_key", 1, "messages[1].x"),
    Case("bad_role", [GOOD, _bad_message({"role": "bot", "content": "a"})], "bad_role", 2,
         "messages[1].role"),
    Case("missing_role", [_bad_message({"content": "a"})], "bad_role", 1, "messages[1].role"),
    Case("empty_content", [GOOD, msgs(("user", ""), ("assistant", "a"))], "missing_content", 2,
         "messages[0].content"),
    Case("absent_content", [msgs(("user", None), ("assistant", "a"))], "missing_content", 1,
         "messages[0].content"),
    Case("blank_content", [GOOD, GOOD, msgs(("user", "q"), ("assistant", "  \n"))],
         "missing_content", 3, "messages[1].content"),
    Case("content_number", [msgs(("user", 42), ("assistant", "a"))], "bad_content", 1,
         "messages[0].content"),
    Case("content_part_string", [msgs(("user", ["hi"]), ("assistant", "a"))], "bad_content", 1,
         "messages[0].content[0]"),
    Case("content_part_empty_text", [msgs(("user", [{"type": "text", "text": ""}]),
                                          ("assistant", "a"))],
         "missing_content", 1, "messages[0].content[0].text"),
    Case("no_assistant", [GOOD, msgs(("system", "s"), ("user", "q"))], "no_assistant_message",
         2, "messages"),
    Case("assistant_first", [GOOD, msgs(("assistant", "a"), ("user", "q"), ("assistant", "b"))],
         "role_order", 2, "messages[0].role", "warning"),
    Case("system_late", [msgs(("user", "q"), ("system", "s"), ("assistant", "a"))],
         "role_order", 1, "messages[1].role", "warning"),
    Case("two_users", [GOOD, msgs(("user", "q"), ("user", "q2"), ("assistant", "a"))],
         "role_order", 2, "messages[1].role", "warning"),
    Case("tool_without_call", [{"messages": [
        {"role": "user", "content": "q"},
        {"role": "tool", "tool_call_id": "c", "content": "r"},
        {"role": "assistant", "content": "a"}]}], "role_order", 1, "messages[1].role",
        "warning"),
    Case("ends_with_user", [msgs(("user", "q"), ("assistant", "a"), ("user", "thanks"))],
         "role_order", 1, "messages[2].role", "warning"),
    Case("weight_two", [GOOD, _bad_message({"role": "assistant", "content": "a", "weight": 2})],
         "bad_weight", 2, "messages[1].weight"),
    Case("weight_bool", [_bad_message({"role": "assistant", "content": "a", "weight": True})],
         "bad_weight", 1, "messages[1].weight"),
    Case("weight_float", [_bad_message({"role": "assistant", "content": "a", "weight": 0.5})],
         "bad_weight", 1, "messages[1].weight"),
    Case("weight_string", [GOOD, GOOD, _bad_message({"role": "assistant", "content": "a",
                                                     "weight": "1"})],
         "bad_weight", 3, "messages[1].weight"),
    Case("weight_on_user", [{"messages": [{"role": "user", "content": "q", "weight": 1},
                                          {"role": "assistant", "content": "a"}]}],
         "weight_not_assistant", 1, "messages[0].weight"),
    Case("tool_calls_on_user", [{"messages": [{"role": "user", "content": "q",
                                               "tool_calls": [CALL]},
                                              {"role": "assistant", "content": "a"}]}],
         "bad_tool_calls", 1, "messages[0].tool_calls"),
    Case("tool_call_arguments_not_json", [GOOD, _bad_message(
        {"role": "assistant", "tool_calls": [CALL | {"function": {
            "name": "get_weather", "arguments": "{city: Oslo"}}]})],
        "bad_tool_calls", 2, "messages[1].tool_calls[0]"),
    Case("tool_call_wrong_type", [_bad_message(
        {"role": "assistant", "tool_calls": [CALL | {"type": "code"}]})],
        "bad_tool_calls", 1, "messages[1].tool_calls[0]"),
    Case("tool_call_undeclared", [GOOD, _bad_message(
        {"role": "assistant", "tool_calls": [CALL]},
        tools=[{"type": "function", "function": {"name": "other"}}])],
        "bad_tool_calls", 2, "messages[1].tool_calls[0]"),
    Case("tool_message_without_id", [{"messages": [
        {"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [CALL]},
        {"role": "tool", "content": "sunny"}, {"role": "assistant", "content": "Sunny."}],
        "tools": [TOOL]}], "missing_tool_call_id", 1, "messages[2].tool_call_id"),
    Case("tools_not_list", [GOOD, chat(tools={"get_weather": {}})], "bad_tools", 2, "tools"),
    Case("tool_without_name", [chat(tools=[{"type": "function", "function": {}}])],
         "bad_tools", 1, "tools[0]"),
    Case("tool_parameters_not_object", [chat(tools=[{"type": "function", "function": {
        "name": "f", "parameters": "none"}}])], "bad_tools", 1, "tools[0].function.parameters"),
    Case("parallel_tool_calls_string", [chat(parallel_tool_calls="yes")], "bad_field_type", 1,
         "parallel_tool_calls"),
    Case("empty_name", [{"messages": [{"role": "user", "content": "q", "name": ""},
                                      {"role": "assistant", "content": "a"}]}],
         "bad_name", 1, "messages[0].name"),
    Case("pref_missing_rejected", [{"input": PREF_IN, "preferred_output": ANSWER_A}],
         "missing_field", 1, "non_preferred_output"),
    Case("pref_two_outputs", [{"input": PREF_IN, "preferred_output": ANSWER_A + ANSWER_B,
                               "non_preferred_output": ANSWER_B}],
         "bad_preference_output", 1, "preferred_output"),
    Case("pref_user_output", [{"input": PREF_IN, "preferred_output": ANSWER_A,
                               "non_preferred_output": [{"role": "user", "content": "x"}]}],
         "bad_preference_output", 1, "non_preferred_output"),
    Case("pref_input_empty", [{"input": {"messages": []}, "preferred_output": ANSWER_A,
                               "non_preferred_output": ANSWER_B}],
         "missing_messages", 1, "input.messages"),
    Case("pref_input_unknown_key", [{"input": PREF_IN | {"seed": 1}, "preferred_output": ANSWER_A,
                                     "non_preferred_output": ANSWER_B}],
         "unknown_key", 1, "input.seed"),
    Case("pref_input_not_object", [{"input": "Say hi", "preferred_output": ANSWER_A,
                                    "non_preferred_output": ANSWER_B}],
         "missing_field", 1, "input"),
    Case("pref_identical", [{"input": PREF_IN, "preferred_output": ANSWER_A,
                             "non_preferred_output": ANSWER_A}],
         "same_preference", 1, "non_preferred_output", "warning"),
    Case("trl_empty_rejected", [{"prompt": "p", "chosen": "c", "rejected": "r"},
                                {"prompt": "p", "chosen": "c", "rejected": ""}],
         "missing_field", 2, "rejected"),
    Case("trl_mixed_shapes", [{"prompt": "p", "chosen": ANSWER_A, "rejected": ANSWER_B}],
         "mixed_shapes", 1),
    Case("trl_chosen_without_assistant", [{"prompt": PREF_IN["messages"], "chosen": [
        {"role": "user", "content": "x"}], "rejected": ANSWER_B}],
        "no_assistant_message", 1, "chosen"),
    Case("trl_chosen_number", [{"prompt": "p", "chosen": 5, "rejected": "r"}],
         "bad_field_type", 1, "chosen"),
    Case("trl_unknown_key", [{"prompt": "p", "chosen": "c", "rejected": "r", "score": 1}],
         "unknown_key", 1, "score"),
    Case("completion_missing", [{"prompt": "p", "completion": "c"}, {"prompt": "p"}],
         "missing_field", 2, "completion"),
    Case("completion_number", [{"prompt": "p", "completion": 3}], "bad_field_type", 1,
         "completion"),
    Case("text_empty", [{"text": "a"}, {"text": "b"}, {"text": " "}], "missing_field", 3, "text"),
    Case("text_number", [{"text": 5}], "bad_field_type", 1, "text"),
    Case("mixed_formats", [GOOD, GOOD, {"text": "plain"}], "mixed_formats", 3),
    Case("blank_line", [GOOD, "", GOOD], "blank_line", 2, severity="warning"),
    Case("whitespace_line", [GOOD, GOOD, " \t ", GOOD], "blank_line", 3, severity="warning"),
    Case("duplicate", [GOOD, chat("other", "x"), GOOD], "duplicate_example", 3,
         severity="warning", says="Line 3 duplicates line 1"),
    Case("duplicate_reordered_keys", [chat("a", "b"), GOOD, '{"messages": [{"content": "a", '
         '"role": "user"}, {"content": "b", "role": "assistant"}]}'], "duplicate_example", 3,
         severity="warning", says="Line 3 duplicates line 1"),
    Case("mixed_chat_then_preference", [GOOD, {"input": PREF_IN, "preferred_output": ANSWER_A,
                                               "non_preferred_output": ANSWER_B}],
         "mixed_formats", 2),
    Case("too_many_tokens", [GOOD, chat("q", "word " * 50)], "too_many_tokens", 2,
         options={"model": "gpt-4o-mini", "context": 30}),
    Case("too_few_for_openai", [GOOD, chat("b", "c")], "too_few_examples", None,
         options={"backend": "openai"}),
    Case("empty_file", [], "empty_file", None),
    Case("only_blank_lines", ["", "  "], "empty_file", None),
    Case("text_on_openai", [{"text": "hello"}] * 1, "format_not_supported", 1,
         options={"backend": "openai"}),
    Case("prompt_completion_on_openai", [{"prompt": "p", "completion": "c"}] * 12,
         "format_not_supported", 1, options={"backend": "openai"}),
    Case("trl_preference_on_openai", [{"prompt": "p", "chosen": "c", "rejected": "r"}] * 12,
         "format_not_supported", 1, options={"backend": "openai"}),
    Case("nine_examples_for_openai", [chat(f"q{n}") for n in range(9)], "too_few_examples",
         None, options={"backend": "openai"}, says="the file has 9"),
    Case("line_too_long", [GOOD, chat("q", "x" * 500), GOOD], "line_too_long", 2,
         options={"max_line_bytes": 200}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_broken_file_reports_exact_code_line_and_field(case: Case) -> None:
    report = check(jsonl(*case.items), **case.options)
    matching = [p for p in report.problems if p.code == case.code]
    assert matching, f"expected {case.code}, got {[p.as_dict() for p in report.problems]}"
    problem = matching[0]
    assert (problem.line, problem.column, problem.field, problem.severity) == (
        case.line, case.column, case.field, case.severity)
    assert case.says is None or case.says in problem.message, problem.message
    assert report.ok is (case.severity != "error")


def _codes_in_source() -> dict[str, str]:
    """Every `Problem("code", ..., severity=...)` the validation package can construct."""
    found: dict[str, str] = {}
    for path in Path(validation.__file__).parent.glob("*.py"):
        for call in re.finditer(r'Problem\(\s*"(\w+)"(.*?)\)\n', path.read_text(), re.S):
            found[call[1]] = "warning" if 'severity="warning"' in call[2] else "error"
    return found


def test_every_code_in_the_source_is_documented_with_its_severity() -> None:
    source = _codes_in_source()
    assert set(source) == set(CODES)
    assert {code for code, severity in source.items() if severity == "warning"} == set(WARNINGS)


def test_corpus_is_large_and_covers_every_code() -> None:
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)
    covered = {c.code for c in CASES}
    elsewhere = {"train_validation_overlap"}  # two files: test_hashes_and_overlap.py
    assert set(CODES) - elsewhere <= covered
