"""Per-format checks of one parsed record: keys, shapes, and the messages inside them."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any

from tunebridge.errors import Problem
from tunebridge.validation.formats import (
    CHAT,
    PREFERENCE,
    PREFERENCE_OPENAI,
    PROMPT_COMPLETION,
    TEXT,
)
from tunebridge.validation.messages import (
    declared_tool_names,
    message_list_problems,
    message_problems,
    tools_problems,
)

_TOOL_KEYS = frozenset({"tools", "parallel_tool_calls"})
ALLOWED_KEYS: dict[str, frozenset[str]] = {
    CHAT: frozenset({"messages"}) | _TOOL_KEYS,
    PREFERENCE_OPENAI: frozenset({"input", "preferred_output", "non_preferred_output"}),
    PREFERENCE: frozenset({"prompt", "chosen", "rejected"}),
    PROMPT_COMPLETION: frozenset({"prompt", "completion"}),
    TEXT: frozenset({"text"}),
}
_INPUT_KEYS = frozenset({"messages"}) | _TOOL_KEYS


def all_record_problems(record: dict[str, Any], fmt: str, line: int) -> Iterator[Problem]:
    """Every check (the validator skips them for plain chat, see plain_chat_is_clean)."""
    yield from _unknown_keys(record, ALLOWED_KEYS[fmt], line, "")
    yield from _CHECKS[fmt](record, line)


def _unknown_keys(record: dict[str, Any], allowed: frozenset[str], line: int, prefix: str
                  ) -> Iterator[Problem]:
    for key in sorted(record.keys() - allowed):
        yield Problem("unknown_key", f"Unknown key {key!r}; allowed here: {sorted(allowed)}.",
                      line=line, field=f"{prefix}{key}")


def plain_chat_is_clean(record: dict[str, Any]) -> bool:
    """The common case, checked in one tight loop: only `messages`, each exactly {role,
    content} with a system/user/assistant role and non-blank string content, in an order
    `_order_problem` accepts, ending with the assistant. True means the full checks would
    report nothing; False means nothing either way (the full checks then run)."""
    if len(record) != 1:
        return False
    messages = record.get("messages")
    if type(messages) is not list or not messages:
        return False
    previous = None
    started = False
    for message in messages:
        if type(message) is not dict or len(message) != 2:
            return False
        role, content = message.get("role"), message.get("content")
        if type(content) is not str or not content or content.isspace():
            return False
        if role == "user" or role == "assistant":
            if role == previous or (role == "assistant" and not started):
                return False
            started = True
        elif role != "system" or started:
            return False
        previous = role
    return previous == "assistant"


def _chat(record: dict[str, Any], line: int) -> Iterator[Problem]:
    messages = record.get("messages")
    yield from message_list_problems(messages, line, "messages", need_assistant=True,
                                     check_order=True)
    yield from _tool_problems(record, messages, line, "")


def _tool_problems(container: dict[str, Any], messages: Any, line: int, prefix: str
                   ) -> Iterator[Problem]:
    """Tool definitions, and tool calls that name a tool the example never declared."""
    if "parallel_tool_calls" in container and not isinstance(
            container["parallel_tool_calls"], bool):
        yield Problem("bad_field_type", "'parallel_tool_calls' must be true or false.",
                      line=line, field=f"{prefix}parallel_tool_calls")
    if "tools" not in container:
        return
    yield from tools_problems(container["tools"], line, f"{prefix}tools")
    declared = declared_tool_names(container["tools"])
    for index, message in enumerate(messages if isinstance(messages, list) else []):
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        for number, call in enumerate(calls if isinstance(calls, list) else []):
            function = call.get("function") if isinstance(call, dict) else None
            name = function.get("name") if isinstance(function, dict) else None
            if isinstance(name, str) and name not in declared:
                yield Problem("bad_tool_calls", f"Calls tool {name!r}, which 'tools' does not "
                              "declare.", line=line,
                              field=f"{prefix}messages[{index}].tool_calls[{number}]")


def _preference_openai(record: dict[str, Any], line: int) -> Iterator[Problem]:
    prompt = record.get("input")
    if not isinstance(prompt, dict):
        yield Problem("missing_field", "'input' must be an object with 'messages'.", line=line,
                      field="input")
    else:
        yield from _unknown_keys(prompt, _INPUT_KEYS, line, "input.")
        yield from message_list_problems(prompt.get("messages"), line, "input.messages",
                                         need_assistant=False, check_order=False)
        yield from _tool_problems(prompt, prompt.get("messages"), line, "input.")
    for key in ("preferred_output", "non_preferred_output"):
        yield from _output_problems(record.get(key), line, key)
    yield from _same_answers(record, "preferred_output", "non_preferred_output", line)


def _output_problems(output: Any, line: int, key: str) -> Iterator[Problem]:
    if output is None:
        yield Problem("missing_field", f"{key!r} is missing.", line=line, field=key)
    elif (not isinstance(output, list) or len(output) != 1 or not isinstance(output[0], dict)
          or output[0].get("role") != "assistant"):
        yield Problem("bad_preference_output", f"{key!r} must be a list holding exactly one "
                      "assistant message.", line=line, field=key)
    else:
        yield from message_problems(output[0], line, f"{key}[0]")


def _same_answers(record: dict[str, Any], good: str, bad: str, line: int) -> Iterator[Problem]:
    if record.get(good) is not None and record.get(good) == record.get(bad):
        yield Problem("same_preference", f"{good!r} and {bad!r} are identical; the pair "
                      "teaches nothing.", line=line, field=bad, severity="warning")


def _text_or_messages(record: dict[str, Any], key: str, line: int, *, answer: bool
                      ) -> Generator[Problem, None, str | None]:
    """A TRL field: a non-empty string, or a message list. Returns the shape it has."""
    value = record.get(key)
    if value is None or value in ("", []):
        yield Problem("missing_field", f"{key!r} is missing or empty.", line=line, field=key)
        return None
    if isinstance(value, str):
        if not value.strip():
            yield Problem("missing_field", f"{key!r} is blank.", line=line, field=key)
        return "text"
    if isinstance(value, list):
        yield from message_list_problems(value, line, key, need_assistant=answer,
                                         check_order=False)
        return "messages"
    yield Problem("bad_field_type", f"{key!r} must be a string or a list of messages.",
                  line=line, field=key)
    return None


def _pairwise(record: dict[str, Any], line: int, keys: tuple[str, ...]) -> Iterator[Problem]:
    """TRL's standard (all strings) or conversational (all message lists) shape, not both."""
    shapes: set[str] = set()
    for key in keys:
        shape = yield from _text_or_messages(record, key, line, answer=key != "prompt")
        if shape:
            shapes.add(shape)
    if len(shapes) > 1:
        yield Problem("mixed_shapes", f"Fields {list(keys)} mix plain strings and message "
                      "lists; use one shape.", line=line)


def _preference(record: dict[str, Any], line: int) -> Iterator[Problem]:
    yield from _pairwise(record, line, ("prompt", "chosen", "rejected"))
    yield from _same_answers(record, "chosen", "rejected", line)


def _prompt_completion(record: dict[str, Any], line: int) -> Iterator[Problem]:
    yield from _pairwise(record, line, ("prompt", "completion"))


def _text(record: dict[str, Any], line: int) -> Iterator[Problem]:
    text = record.get("text")
    if not isinstance(text, str):
        code = "missing_field" if text is None else "bad_field_type"
        yield Problem(code, "'text' must be a string.", line=line, field="text")
    elif not text.strip():
        yield Problem("missing_field", "'text' is empty.", line=line, field="text")


_CHECKS: dict[str, Callable[[dict[str, Any], int], Iterator[Problem]]] = {
    CHAT: _chat,
    PREFERENCE_OPENAI: _preference_openai,
    PREFERENCE: _preference,
    PROMPT_COMPLETION: _prompt_completion,
    TEXT: _text,
}
