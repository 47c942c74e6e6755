"""Streaming JSONL validation: every problem with its line number, in constant memory.

The report is what HTTP, CLI and Slack render; a file with errors never becomes trainable.
"""

from tunebridge.validation.codes import CODES, ERRORS, WARNINGS
from tunebridge.validation.files import (
    OverlapReport,
    count_file_tokens,
    find_overlap,
    iter_objects,
    validate_bytes,
    validate_file,
    validate_stream,
)
from tunebridge.validation.formats import (
    BACKEND_FORMATS,
    CHAT,
    FORMATS,
    LOCAL,
    METHOD_FOR_FORMAT,
    OPENAI,
    OPENAI_MIN_EXAMPLES,
    PREFERENCE,
    PREFERENCE_OPENAI,
    PROMPT_COMPLETION,
    TEXT,
    detect_format,
    format_supported,
    unsupported_format_problem,
)
from tunebridge.validation.messages import ROLES
from tunebridge.validation.parallel import validate_file_parallel
from tunebridge.validation.report import ValidationReport
from tunebridge.validation.stats import TokenStats, example_tokens
from tunebridge.validation.stream import StreamingValidator, ValidationOptions

__all__ = [
    "BACKEND_FORMATS", "CHAT", "CODES", "ERRORS", "FORMATS", "LOCAL", "METHOD_FOR_FORMAT",
    "OPENAI", "OPENAI_MIN_EXAMPLES", "PREFERENCE", "PREFERENCE_OPENAI", "PROMPT_COMPLETION",
    "ROLES", "TEXT", "WARNINGS",
    "OverlapReport", "StreamingValidator", "TokenStats", "ValidationOptions", "ValidationReport",
    "count_file_tokens", "detect_format", "example_tokens", "find_overlap", "format_supported",
    "iter_objects", "unsupported_format_problem", "validate_bytes", "validate_file",
    "validate_file_parallel", "validate_stream",
]
