"""The streaming validator: feed bytes as they arrive, get one report at the end.

The upload path can hash, write and validate in the same pass over a request body; files are
validated by feeding them in chunks. Memory stays bounded: one line at a time, a capped problem
list, a bounded histogram of token counts and a bounded hash table for duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tunebridge.errors import Problem
from tunebridge.tokens import TokenCounter, context_for_model, counter_for_model
from tunebridge.validation.formats import (
    CHAT,
    LOCAL,
    OPENAI,
    OPENAI_MIN_EXAMPLES,
    PROMPT_COMPLETION,
    TEXT,
    detect_format,
    format_supported,
    unsupported_format_problem,
)
from tunebridge.validation.hashes import DEFAULT_MAX_SLOTS, HashIndex, record_hash
from tunebridge.validation.lines import LineSplitter
from tunebridge.validation.pipeline import TokenPipeline
from tunebridge.validation.records import all_record_problems, plain_chat_is_clean
from tunebridge.validation.report import ValidationReport
from tunebridge.validation.stats import TokenStats, example_tokens

_BOM = b"\xef\xbb\xbf"
# Formats whose token count is a plain sum of their texts' counts, so the texts can be counted
# later, in a batch; preference pairs take a max of two answers and are counted at once.
_ADDITIVE = frozenset({CHAT, PROMPT_COMPLETION, TEXT})


@dataclass(frozen=True)
class ValidationOptions:
    """What to check against. Without a backend every format passes; without a token counter
    (an OpenAI `model`, or a local tokenizer as `counter`) no token statistics are gathered."""

    backend: str | None = None
    model: str | None = None
    counter: TokenCounter | None = None
    context: int | None = None
    max_reported: int = 100
    max_line_bytes: int = 8 << 20
    check_duplicates: bool = True
    hash_slots: int = DEFAULT_MAX_SLOTS
    # Threads counting tokens (with tiktoken) beside the parsing thread; 0: inline, with the
    # faster bpe-openai count. Opt-in: on the 2-core host we measure on, inline was faster
    # (see pipeline.py and docs/benchmarks.md).
    token_threads: int = 0
    token_batch_chars: int = 1 << 20  # text handed to a counting thread at a time

    def token_counter(self) -> TokenCounter | None:
        if self.counter is not None:
            return self.counter
        if self.model and self.backend != LOCAL:
            return counter_for_model(self.model)
        return None

    def token_context(self) -> int | None:
        if self.context is not None:
            return self.context
        return context_for_model(self.model) if self.model and self.backend != LOCAL else None


class StreamingValidator:
    """Feed chunks, then finish. A part of a larger file (see parallel.py) starts at its own
    line, byte offset and the file's format, and leaves the whole-file checks to its caller."""

    def __init__(self, options: ValidationOptions | None = None, *, first_line: int = 1,
                 first_offset: int = 0, file_format: str | None = None) -> None:
        self.options = options or ValidationOptions()
        self.report = ValidationReport(max_reported=self.options.max_reported,
                                       format=file_format)
        self._splitter = LineSplitter(self.options.max_line_bytes)
        self._counter = self.options.token_counter()
        self._context = self.options.token_context()
        if self._counter is not None:
            self.report.tokens = TokenStats(context=self._context)
        self._pipeline = self._token_pipeline()
        self.hashes = HashIndex(self.options.hash_slots) if self.options.check_duplicates else None
        self._line = first_line - 1  # number of the last line taken
        self._offset = first_offset  # byte offset of the next line's start

    def _token_pipeline(self) -> TokenPipeline | None:
        counter, threads = self._counter, self.options.token_threads
        if counter is None or counter.count_batch is None or threads <= 0:
            return None
        self._deferring = counter.deferring()
        return TokenPipeline(counter, counter.count_batch, self.report.add, self._count,
                             threads=threads, batch_chars=self.options.token_batch_chars)

    def _add(self, problem: Problem) -> None:
        """Every problem goes through here, so that it keeps its place among deferred counts."""
        if self._pipeline is not None:
            self._pipeline.add_problem(problem)
        else:
            self.report.add(problem)

    def close(self) -> None:
        """Stop the counting threads (finish does; this is for a validation abandoned early)."""
        if self._pipeline is not None:
            self._pipeline.close()

    def feed(self, chunk: bytes) -> None:
        self.report.num_bytes += len(chunk)
        for line in self._splitter.feed(chunk):
            self._take(line)

    def finish(self, *, whole_file: bool = True) -> ValidationReport:
        for line in self._splitter.finish():
            self._take(line)
        if self._pipeline is not None:
            self._pipeline.drain()
            self._pipeline.close()
        report = self.report
        if self.hashes is not None:
            report.duplicates_exact = self.hashes.exact
        if whole_file:
            add_file_problems(report, self.options.backend)
        return report

    def _take(self, line: bytes | int) -> None:
        """Account for one line (bytes, or an int: the size of a line too long to keep)."""
        report = self.report
        report.num_lines += 1
        self._line += 1
        size = line if isinstance(line, int) else len(line)
        end = self._offset + size + 1
        try:
            if isinstance(line, int):
                self._add(Problem("line_too_long", f"Line is {size} bytes; the limit is "
                                  f"{self.options.max_line_bytes}.", line=self._line))
            else:
                self._check_line(line, self._line)
        finally:
            self._offset = end

    def _check_line(self, raw: bytes, line: int) -> None:
        if line == 1 and raw.startswith(_BOM):
            self._add(Problem("bom", "The file starts with a UTF-8 byte-order mark; save "
                              "it without one.", line=1, column=1))
            raw = raw[len(_BOM):]
            self._offset += len(_BOM)
        if not raw.strip():
            self._add(Problem("blank_line", "Blank line (ignored).", line=line,
                              severity="warning"))
            return
        record = self._parse(raw, line)
        if record is None:
            return
        fmt = self._format(record, line)
        if fmt is not None:
            self._check_record(record, fmt, line)

    def _parse(self, raw: bytes, line: int) -> dict[str, Any] | None:
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self._add(_decode_problem(raw, line, self._offset, exc))
            return None
        if not isinstance(record, dict):
            self._add(Problem("not_object", "Each line must be a JSON object, not "
                              f"{type(record).__name__}.", line=line, column=1))
            return None
        return record

    def _format(self, record: dict[str, Any], line: int) -> str | None:
        fmt = detect_format(record)
        report = self.report
        if fmt is None:
            self._add(Problem("unknown_format", "No known format: expected 'messages', "
                              "'input'+'preferred_output'+'non_preferred_output', "
                              "'prompt'+'chosen'+'rejected', 'prompt'+'completion' or 'text'; "
                              f"got keys {sorted(record)[:10]}.", line=line))
            return None
        if report.format is None:
            report.format = fmt
            backend = self.options.backend
            if backend is not None and not format_supported(fmt, backend):
                self._add(unsupported_format_problem(fmt, backend, line))
        elif fmt != report.format:
            self._add(Problem("mixed_formats", f"This line is {fmt} but the file is "
                              f"{report.format} (from its first example).", line=line))
            return None
        return fmt

    def _check_record(self, record: dict[str, Any], fmt: str, line: int) -> None:
        report = self.report
        report.num_examples += 1
        plain = fmt == CHAT and plain_chat_is_clean(record)
        clean = True
        if not plain:
            for problem in all_record_problems(record, fmt, line):
                clean = clean and problem.severity != "error"
                self._add(problem)
        if clean and self._counter is not None:
            self._tokens(record, fmt, line, plain)
        if self.hashes is not None:
            first = self.hashes.add(record_hash(record), line)
            if first is not None:
                report.duplicates += 1
                self._add(Problem("duplicate_example", f"Line {line} duplicates line {first}.",
                                  line=line, severity="warning"))


    def _tokens(self, record: dict[str, Any], fmt: str, line: int, plain: bool) -> None:
        counter = self._counter
        assert counter is not None
        if self._pipeline is None:
            tokens = (counter.plain_messages(record["messages"]) if plain
                      else example_tokens(counter, record, fmt))
            self._count(line, tokens)
        elif fmt in _ADDITIVE:
            deferring = self._deferring
            texts: list[str] = []
            deferring.texts = texts
            known = (deferring.plain_messages(record["messages"]) if plain
                     else example_tokens(deferring, record, fmt))
            self._pipeline.add_example(line, known, texts)
        else:
            self._pipeline.add_example(line, example_tokens(counter, record, fmt), [])

    def _count(self, line: int, tokens: int) -> None:
        """An example's token count, in line order (straight away, or as its batch resolves)."""
        assert self.report.tokens is not None
        self.report.tokens.add(tokens)
        if self._context is not None and tokens > self._context:
            self.report.add(Problem("too_many_tokens", f"The example has {tokens} tokens; the "
                                    f"model's context is {self._context}, so it would be "
                                    "truncated.", line=line))


def add_file_problems(report: ValidationReport, backend: str | None) -> None:
    """Checks on the file as a whole, once every line is in."""
    if report.num_examples == 0 and report.ok:
        report.add(Problem("empty_file", "The file contains no examples."))
    elif backend == OPENAI and 0 < report.num_examples < OPENAI_MIN_EXAMPLES:
        report.add(Problem("too_few_examples", f"OpenAI needs at least {OPENAI_MIN_EXAMPLES} "
                           f"examples; the file has {report.num_examples}."))


def _decode_problem(raw: bytes, line: int, offset: int, exc: orjson.JSONDecodeError
                    ) -> Problem:
    """Invalid UTF-8 is told apart from invalid JSON only after orjson fails: the fast path
    decodes once."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return Problem("not_utf8", f"Invalid UTF-8 at byte offset {offset + bad.start} of the "
                       f"file (byte {bad.start + 1} of the line).", line=line,
                       column=bad.start + 1)
    return Problem("invalid_json", f"Invalid JSON: {exc.msg}.", line=line, column=exc.colno)
