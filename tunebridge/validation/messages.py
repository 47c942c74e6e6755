"""Checks on chat messages, tool calls and tool definitions, shared by every chat-shaped format.

Each check yields Problems located by line and field path (`messages[2].content`), so a user
can go straight to the spot; nothing stops at the first problem in an example.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from tunebridge.errors import Problem

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
MESSAGE_KEYS = frozenset({"role", "content", "name", "weight", "tool_calls", "tool_call_id"})
_SYSTEM = frozenset({"system", "developer"})


def message_list_problems(messages: Any, line: int, where: str, *, need_assistant: bool,
                          check_order: bool) -> Iterator[Problem]:
    """Every message checked; then, for whole conversations, assistant presence and order."""
    if not isinstance(messages, list) or not messages:
        yield Problem("missing_messages", f"'{where}' must be a non-empty list of messages.",
                      line=line, field=where)
        return
    for index, message in enumerate(messages):
        yield from message_problems(message, line, f"{where}[{index}]")
    if need_assistant and not any(_role(m) == "assistant" for m in messages):
        yield Problem("no_assistant_message",
                      "The example has no assistant message, so there is nothing to learn.",
                      line=line, field=where)
    if check_order:
        found = _order_problem(messages, line, where)
        if found is not None:
            yield found


def _role(message: Any) -> str | None:
    """Roles of the wrong type (lists, objects) are reported by bad_role; here they are None
    so that set and tuple lookups never meet an unhashable value."""
    role = message.get("role") if isinstance(message, dict) else None
    return role if isinstance(role, str) else None


def message_problems(message: Any, line: int, at: str) -> Iterator[Problem]:
    if not isinstance(message, dict):
        yield Problem("message_not_object", "Each message must be a JSON object.", line=line,
                      field=at)
        return
    for key in sorted(message.keys() - MESSAGE_KEYS):
        yield Problem("unknown_key", f"Unknown message key {key!r}; allowed: "
                      f"{sorted(MESSAGE_KEYS)}.", line=line, field=f"{at}.{key}")
    role = message.get("role")
    if not isinstance(role, str) or role not in ROLES:
        yield Problem("bad_role", f"Role {role!r} is not one of {sorted(ROLES)}.", line=line,
                      field=f"{at}.role")
    yield from _content_problems(message, line, at)
    yield from _extra_field_problems(message, role, line, at)


def _content_problems(message: dict[str, Any], line: int, at: str) -> Iterator[Problem]:
    """Content may be absent or empty only on an assistant message that calls tools instead."""
    content = message.get("content")
    calls_tools = message.get("role") == "assistant" and bool(message.get("tool_calls"))
    if content is None:
        if not calls_tools:
            yield Problem("missing_content", "Message content is missing.", line=line,
                          field=f"{at}.content")
    elif isinstance(content, str):
        if not content.strip() and not calls_tools:
            yield Problem("missing_content", "Message content is empty.", line=line,
                          field=f"{at}.content")
    elif isinstance(content, list):
        yield from _part_problems(content, line, f"{at}.content")
    else:
        yield Problem("bad_content", "Content must be a string or a list of content parts.",
                      line=line, field=f"{at}.content")


def _part_problems(parts: list[Any], line: int, at: str) -> Iterator[Problem]:
    if not parts:
        yield Problem("missing_content", "Message content is an empty list.", line=line,
                      field=at)
    for index, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            yield Problem("bad_content", "A content part must be an object with a 'type'.",
                          line=line, field=f"{at}[{index}]")
        elif part["type"] == "text" and not (isinstance(part.get("text"), str)
                                             and part["text"].strip()):
            yield Problem("missing_content", "A text part needs a non-empty 'text'.",
                          line=line, field=f"{at}[{index}].text")


def _extra_field_problems(message: dict[str, Any], role: Any, line: int, at: str
                          ) -> Iterator[Problem]:
    if "name" in message and not (isinstance(message["name"], str) and message["name"]):
        yield Problem("bad_name", "'name' must be a non-empty string.", line=line,
                      field=f"{at}.name")
    if "weight" in message:
        weight = message["weight"]
        if role != "assistant":
            yield Problem("weight_not_assistant", "Only assistant messages may carry a weight.",
                          line=line, field=f"{at}.weight")
        elif type(weight) is not int or weight not in (0, 1):
            yield Problem("bad_weight", f"weight must be 0 or 1, not {weight!r}.", line=line,
                          field=f"{at}.weight")
    if "tool_calls" in message:
        if role != "assistant":
            yield Problem("bad_tool_calls", "Only assistant messages may call tools.",
                          line=line, field=f"{at}.tool_calls")
        else:
            yield from tool_call_problems(message["tool_calls"], line, f"{at}.tool_calls")
    if role == "tool" and not (isinstance(message.get("tool_call_id"), str)
                               and message["tool_call_id"]):
        yield Problem("missing_tool_call_id", "A tool message needs the 'tool_call_id' it "
                      "answers.", line=line, field=f"{at}.tool_call_id")


def tool_call_problems(calls: Any, line: int, at: str) -> Iterator[Problem]:
    """OpenAI's shape: [{"id", "type": "function", "function": {"name", "arguments": JSON}}]."""
    if not isinstance(calls, list) or not calls:
        yield Problem("bad_tool_calls", "'tool_calls' must be a non-empty list.", line=line,
                      field=at)
        return
    for index, call in enumerate(calls):
        reason = _tool_call_reason(call)
        if reason:
            yield Problem("bad_tool_calls", reason, line=line, field=f"{at}[{index}]")


def _tool_call_reason(call: Any) -> str | None:
    if not isinstance(call, dict):
        return "A tool call must be an object."
    if not (isinstance(call.get("id"), str) and call["id"]):
        return "A tool call needs a non-empty string 'id'."
    if call.get("type") != "function":
        return "A tool call's 'type' must be 'function'."
    function = call.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        return "A tool call needs 'function': {'name': ..., 'arguments': ...}."
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        return "'function.arguments' must be a string holding JSON."
    try:
        orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return "'function.arguments' is not valid JSON."
    return None


def tools_problems(tools: Any, line: int, at: str = "tools") -> Iterator[Problem]:
    """OpenAI's shape: [{"type": "function", "function": {"name", "parameters"?, ...}}]."""
    if not isinstance(tools, list):
        yield Problem("bad_tools", "'tools' must be a list.", line=line, field=at)
        return
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if (not isinstance(function, dict) or tool.get("type") != "function"
                or not (isinstance(function.get("name"), str) and function["name"])):
            yield Problem("bad_tools", "A tool must be {'type': 'function', 'function': "
                          "{'name': ...}}.", line=line, field=f"{at}[{index}]")
        elif not isinstance(function.get("parameters", {}), dict):
            yield Problem("bad_tools", "'parameters' must be a JSON Schema object.", line=line,
                          field=f"{at}[{index}].function.parameters")


def declared_tool_names(tools: Any) -> set[str]:
    if not isinstance(tools, list):
        return set()
    return {t["function"]["name"] for t in tools if isinstance(t, dict)
            and isinstance(t.get("function"), dict) and isinstance(t["function"].get("name"), str)}


def _order_problem(messages: list[Any], line: int, where: str) -> Problem | None:
    """The first ordering oddity only, as a warning: the data may be deliberate."""
    previous: Any = None
    started = False
    for index, message in enumerate(messages):
        role = _role(message)
        reason = _order_reason(role, previous, messages[index - 1] if index else None, started)
        if reason:
            return Problem("role_order", f"Roles out of order: {reason}.", line=line,
                           field=f"{where}[{index}].role", severity="warning")
        started = started or role in ("user", "assistant", "tool")
        previous = role
    if previous in ROLES and previous != "assistant":
        return Problem("role_order", "The last message is not from the assistant; messages "
                       "after the last answer teach nothing.", line=line,
                       field=f"{where}[{len(messages) - 1}].role", severity="warning")
    return None


def _order_reason(role: Any, previous: Any, before: Any, started: bool) -> str | None:
    if role in _SYSTEM and started:
        return "a system message after the conversation started"
    # `before` is a dict whenever `previous` is a role string.
    answers_call = previous == "tool" or (previous == "assistant"
                                          and bool(before.get("tool_calls")))
    if role == "tool" and not answers_call:
        return "a tool message that answers no tool call"
    if role == "assistant" and not started:
        return "the conversation starts with the assistant"
    if role in ("user", "assistant") and role == previous:
        return f"two {role} messages in a row"
    return None
