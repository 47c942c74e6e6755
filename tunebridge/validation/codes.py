"""Every problem code validation can report, with what it means: one vocabulary for the API
docs, the CLI's help and Slack. Warnings never block a job; errors do."""

from __future__ import annotations

ERRORS: dict[str, str] = {
    "not_utf8": "the line is not valid UTF-8 (the message gives the byte offset)",
    "bom": "the file starts with a UTF-8 byte-order mark",
    "invalid_json": "the line is not valid JSON (line and column given)",
    "line_too_long": "the line is longer than the configured byte limit",
    "not_object": "the line is JSON but not an object",
    "unknown_format": "no known format's keys are present",
    "mixed_formats": "the line's format differs from the file's first example",
    "format_not_supported": "the chosen backend does not train this format",
    "unknown_key": "a key the format does not define",
    "missing_messages": "'messages' is missing, empty or not a list",
    "message_not_object": "a message is not an object",
    "bad_role": "a role outside system, developer, user, assistant, tool",
    "missing_content": "message content is missing or empty",
    "bad_content": "content is neither a string nor a list of parts",
    "bad_name": "'name' is not a non-empty string",
    "no_assistant_message": "nothing to learn: no assistant message",
    "bad_weight": "an assistant weight other than 0 or 1",
    "weight_not_assistant": "a weight on a message that is not the assistant's",
    "bad_tool_calls": "tool_calls of the wrong shape, on a non-assistant, or undeclared",
    "missing_tool_call_id": "a tool message without the id of the call it answers",
    "bad_tools": "tool definitions of the wrong shape",
    "bad_field_type": "a field of the wrong JSON type",
    "missing_field": "a required field is missing or empty",
    "bad_preference_output": "a preference output is not exactly one assistant message",
    "mixed_shapes": "strings and message lists mixed within one TRL example",
    "too_many_tokens": "the example is longer than the model's context",
    "too_few_examples": "fewer examples than the backend accepts",
    "empty_file": "the file has no examples",
}

WARNINGS: dict[str, str] = {
    "blank_line": "a blank line, ignored",
    "role_order": "roles in an unusual order (first oddity per example)",
    "same_preference": "the preferred and rejected answers are identical",
    "duplicate_example": "the same example appears on an earlier line",
    "train_validation_overlap": "examples present in both training and validation files",
}

CODES: dict[str, str] = ERRORS | WARNINGS
