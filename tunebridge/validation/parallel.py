"""Validating a large file on several cores: byte ranges in worker processes, merged in order.

Token counting dominates validation time and tiktoken holds the GIL, so only more processes
go faster. The file is cut at newlines into one range per worker. A first parallel pass counts
each range's lines, so every worker reports true line numbers and byte offsets; the second
validates each range against the file's format (the parent reads it from the first example).
Merging adds counts and token statistics, keeps the first `max_reported` problems by line, and
checks each range's hashes against the earlier ranges', so duplicates across ranges are found
too (citing the earliest line the merge knows of, which may not be the very first).
Workers are forked from a single-threaded process (the CLI, a bench) after the parent has
loaded the tokenizer, so its ~125 MB of BPE tables are shared copy-on-write instead of loaded
once per worker; inside a threaded process (the server) forking is unsafe and they are spawned.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import accumulate, chain
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path

from tunebridge.errors import Problem
from tunebridge.validation.formats import (
    detect_format,
    format_supported,
    unsupported_format_problem,
)
from tunebridge.validation.hashes import HashIndex
from tunebridge.validation.lines import CHUNK_BYTES
from tunebridge.validation.report import ValidationReport
from tunebridge.validation.stream import StreamingValidator, ValidationOptions, add_file_problems

MIN_PARALLEL_BYTES = 64 << 20


@dataclass(frozen=True)
class _Range:
    path: str
    start: int
    end: int
    first_line: int = 1
    file_format: str | None = None
    options: ValidationOptions | None = None


def validate_file_parallel(path: Path, options: ValidationOptions | None = None, *,
                           workers: int, min_bytes: int = MIN_PARALLEL_BYTES
                           ) -> ValidationReport:
    """Same report as a serial pass (duplicate messages aside, see above), `workers` times
    faster on big files. Small files, one worker, or a caller's own tokenizer (not picklable
    in general) take the serial path."""
    options = options or ValidationOptions()
    size = Path(path).stat().st_size
    if workers <= 1 or size < max(min_bytes, 1) or options.counter is not None:
        return _validate(_Range(str(path), 0, size, options=options), whole_file=True)[0]
    ranges = _ranges(Path(path), size, workers)
    first = _first_format(Path(path), options)
    with ProcessPoolExecutor(len(ranges), mp_context=_start_method(options)) as pool:
        newlines = list(pool.map(_count_newlines, ranges))
        starts = [1, *(1 + n for n in accumulate(newlines[:-1]))]
        tasks = [_Range(r.path, r.start, r.end, line, first[0] if first else None, options)
                 for r, line in zip(ranges, starts, strict=True)]
        return _merge(pool.map(_validate, tasks), options, first)


def _start_method(options: ValidationOptions) -> BaseContext:
    if threading.active_count() > 1 or "fork" not in get_all_start_methods():
        return get_context("spawn")
    options.token_counter()  # cached: the forked workers inherit it
    return get_context("fork")


def _ranges(path: Path, size: int, workers: int) -> list[_Range]:
    """Byte ranges of about equal size, each ending just after a newline (or at EOF)."""
    cuts = [0]
    with path.open("rb") as stream:
        for index in range(1, workers):
            stream.seek(max(size * index // workers, cuts[-1]))
            while (block := stream.read(1 << 16)) and b"\n" not in block:
                pass
            cut = stream.tell() - len(block) + block.index(b"\n") + 1 if block else size
            cuts.append(max(cut, cuts[-1]))
    cuts.append(size)
    return [_Range(str(path), a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def _read(task: _Range) -> Iterator[bytes]:
    with open(task.path, "rb") as stream:
        stream.seek(task.start)
        left = task.end - task.start
        while left > 0 and (chunk := stream.read(min(CHUNK_BYTES, left))):
            left -= len(chunk)
            yield chunk


def _count_newlines(task: _Range) -> int:
    return sum(chunk.count(b"\n") for chunk in _read(task))


def _first_format(path: Path, options: ValidationOptions) -> tuple[str, int] | None:
    """The file's format and the line that sets it, as a serial pass would find them."""
    from tunebridge.validation.files import iter_objects

    for number, record in iter_objects(path, options.max_line_bytes):
        fmt = detect_format(record)
        if fmt is not None:
            return fmt, number
    return None


def _validate(task: _Range, whole_file: bool = False
              ) -> tuple[ValidationReport, HashIndex | None]:
    validator = StreamingValidator(task.options, first_line=task.first_line,
                                   first_offset=task.start, file_format=task.file_format)
    for chunk in _read(task):
        validator.feed(chunk)
    return validator.finish(whole_file=whole_file), validator.hashes


def _merge(parts: Iterator[tuple[ValidationReport, HashIndex | None]],
           options: ValidationOptions, first: tuple[str, int] | None) -> ValidationReport:
    report = ValidationReport(max_reported=options.max_reported, format=first and first[0])
    index = HashIndex(options.hash_slots) if options.check_duplicates else None
    kept: list[list[Problem]] = []
    if first and options.backend and not format_supported(first[0], options.backend):
        kept.append([unsupported_format_problem(first[0], options.backend, first[1])])
        report.error_counts["format_not_supported"] += 1
    for part, hashes in parts:
        _add_counts(report, part)
        kept.append(part.problems)
        if index is not None and hashes is not None:
            kept.append(_cross_duplicates(report, index, hashes))
            report.duplicates_exact = report.duplicates_exact and hashes.exact and index.exact
    report.problems = heapq.nsmallest(report.max_reported, chain.from_iterable(kept),
                                      key=lambda p: p.line or 0)
    add_file_problems(report, options.backend)
    return report


def _add_counts(report: ValidationReport, part: ValidationReport) -> None:
    report.num_examples += part.num_examples
    report.num_lines += part.num_lines
    report.num_bytes += part.num_bytes
    report.duplicates += part.duplicates
    report.error_counts.update(part.error_counts)
    report.warning_counts.update(part.warning_counts)
    if part.tokens is not None:
        if report.tokens is None:
            report.tokens = part.tokens
        else:
            report.tokens.merge(part.tokens)


def _cross_duplicates(report: ValidationReport, index: HashIndex, hashes: HashIndex
                      ) -> list[Problem]:
    """Examples first seen in this range that an earlier range already had; counted in full,
    the `max_reported` lowest lines kept."""
    def found() -> Iterator[Problem]:
        for value, line in hashes.entries():
            earlier = index.add(value, line)
            if earlier is not None:
                report.duplicates += 1
                report.warning_counts["duplicate_example"] += 1
                yield Problem("duplicate_example", f"Line {line} duplicates line {earlier}.",
                              line=line, severity="warning")

    return heapq.nsmallest(report.max_reported, found(), key=lambda p: p.line or 0)
