"""Whole-file entry points: validate a file, and look for leakage between train and validation."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tunebridge.errors import Problem
from tunebridge.tokens import TokenCounter
from tunebridge.validation.formats import detect_format
from tunebridge.validation.hashes import DEFAULT_MAX_SLOTS, HashIndex, record_hash
from tunebridge.validation.lines import CHUNK_BYTES, iter_lines
from tunebridge.validation.parallel import validate_file_parallel
from tunebridge.validation.report import ValidationReport
from tunebridge.validation.stats import TokenStats, example_tokens
from tunebridge.validation.stream import StreamingValidator, ValidationOptions


def validate_file(path: Path, *, backend: str | None = None, model: str | None = None,
                  counter: TokenCounter | None = None, context: int | None = None,
                  max_reported: int = 100, max_line_bytes: int = 8 << 20,
                  check_duplicates: bool = True, workers: int = 1) -> ValidationReport:
    """Validate a JSONL file in one streaming pass; see ValidationOptions for the arguments.

    `workers` > 1 spreads a large file over that many processes (see parallel.py). A gzip
    file (by its magic bytes, whatever its name) is decompressed while streaming, serially.
    """
    options = ValidationOptions(backend=backend, model=model, counter=counter, context=context,
                                max_reported=max_reported, max_line_bytes=max_line_bytes,
                                check_duplicates=check_duplicates)
    if is_gzip(Path(path)):
        return validate_stream(gzip.open(path, "rb"), options)
    if workers > 1:
        return validate_file_parallel(Path(path), options, workers=workers)
    return validate_stream(Path(path).open("rb"), options)


def is_gzip(path: Path) -> bool:
    with Path(path).open("rb") as stream:
        return stream.read(2) == b"\x1f\x8b"


def validate_stream(stream: Any, options: ValidationOptions | None = None) -> ValidationReport:
    """Validate and close a binary stream (anything with `read(n)`)."""
    validator = StreamingValidator(options)
    try:
        with stream:
            while chunk := stream.read(CHUNK_BYTES):
                validator.feed(chunk)
        return validator.finish()
    finally:
        validator.close()


def validate_bytes(data: bytes, options: ValidationOptions | None = None) -> ValidationReport:
    validator = StreamingValidator(options)
    try:
        validator.feed(data)
        return validator.finish()
    finally:
        validator.close()


def iter_objects(path: Path, max_line_bytes: int = 8 << 20
                 ) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for every line that parses to a JSON object; others are skipped,
    as validation reports them."""
    for number, line in enumerate(iter_lines(path, max_line_bytes), start=1):
        if isinstance(line, int) or not line.strip():
            continue
        try:
            record = orjson.loads(line.removeprefix(b"\xef\xbb\xbf") if number == 1 else line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict):
            yield number, record


def count_file_tokens(path: Path, counter: TokenCounter, *, context: int | None = None
                      ) -> TokenStats:
    """Token statistics of an already validated file, for a model chosen after upload.

    Job creation calls this when the dataset was validated without the job's model; it skips
    the checks (the stored report has them) and only counts; a record of another format or of
    the wrong shape, which validation would have refused, is skipped rather than raised on.
    """
    stats = TokenStats(context=context)
    fmt: str | None = None
    for _, record in iter_objects(path):
        fmt = fmt or detect_format(record)
        if fmt is None or detect_format(record) != fmt:
            continue
        try:
            tokens = example_tokens(counter, record, fmt)
        except (KeyError, TypeError, AttributeError):
            continue
        stats.add(tokens)
    return stats


@dataclass
class OverlapReport:
    """Examples present in both files: the validation loss then measures memorisation."""

    train_examples: int = 0
    validation_examples: int = 0
    train_in_validation: int = 0  # training examples whose content is in the validation file
    validation_in_train: int = 0  # distinct validation examples that leak into training
    pairs: list[tuple[int, int]] = field(default_factory=list)  # (train line, validation line)
    exact: bool = True

    @property
    def problem(self) -> Problem | None:
        if not self.train_in_validation:
            return None
        train_line, validation_line = self.pairs[0]
        return Problem(
            "train_validation_overlap",
            f"{self.train_in_validation} of {self.train_examples} training examples also appear "
            f"in the validation file ({self.validation_in_train} of {self.validation_examples} "
            f"validation examples leak); first: training line {train_line} = validation line "
            f"{validation_line}." + ("" if self.exact else " Counts are lower bounds."),
            line=train_line, severity="warning")

    def as_dict(self) -> dict[str, Any]:
        return {
            "train_examples": self.train_examples,
            "validation_examples": self.validation_examples,
            "train_in_validation": self.train_in_validation,
            "validation_in_train": self.validation_in_train,
            "pairs": [list(pair) for pair in self.pairs],
            "exact": self.exact,
        }


def find_overlap(train: Path, validation: Path, *, max_pairs: int = 10,
                 max_slots: int = DEFAULT_MAX_SLOTS) -> OverlapReport:
    """Index the validation file's hashes, then stream the training file against them."""
    result = OverlapReport()
    index, hits = HashIndex(max_slots), HashIndex(max_slots)
    for number, record in iter_objects(validation):
        result.validation_examples += 1
        index.add(record_hash(record), number)
    for number, record in iter_objects(train):
        result.train_examples += 1
        value = record_hash(record)
        first = index.get(value)
        if first is None:
            continue
        result.train_in_validation += 1
        if hits.add(value, number) is None:
            result.validation_in_train += 1
        if len(result.pairs) < max_pairs:
            result.pairs.append((number, first))
    result.exact = index.exact and hits.exact
    return result
