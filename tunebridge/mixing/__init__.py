"""Forgetting guard: mix general instruction data into a task set (seed: "mix 20% general").

The mixed file is built in streaming passes and constant memory: count both files, pick the
general examples by selection sampling (Knuth's Algorithm S: exactly k of N, uniformly, in one
pass, no index list), and interleave them with the task examples at random positions. The same
inputs, share and seed always give the same bytes. The result is an ordinary JSONL file that
goes through validation like any upload.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import BinaryIO

DEFAULT_SHARE = 0.2
GENERAL_SAMPLE = "general_instructions.jsonl"
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class MixResult:
    task_examples: int
    general_examples: int  # written, repeats included
    general_available: int  # distinct examples in the general file
    general_passes: int  # > 1 when the general file had to be reused to reach the share
    share: float  # general / total actually written

    @property
    def total(self) -> int:
        return self.task_examples + self.general_examples


def general_count(task_examples: int, share: float = DEFAULT_SHARE) -> int:
    """General examples that make up `share` of the total: task x share / (1 - share).

    With the default 0.2 that is task // 4, as in the seed's `range(len(task) // 4)`.
    """
    if not 0 <= share < 1:
        raise ValueError("share must be in [0, 1)")
    return int(task_examples * share / (1 - share) + 1e-9)


def _examples(path: Path) -> Iterator[bytes]:
    """Non-blank lines as newline-terminated bytes (validated files: one example a line)."""
    with path.open("rb") as stream:
        for number, raw in enumerate(stream):
            line = raw.removeprefix(_BOM) if number == 0 else raw
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line + b"\n"


def _count(path: Path) -> int:
    return sum(1 for _ in _examples(path))


def _selected(path: Path, available: int, wanted: int, rng: random.Random) -> Iterator[bytes]:
    """`wanted` examples: whole passes over the file, then Algorithm S for the remainder."""
    passes, remainder = divmod(wanted, available)
    for _ in range(passes):
        yield from _examples(path)
    left = available
    for line in _examples(path):
        if remainder and rng.random() * left < remainder:
            remainder -= 1
            yield line
        left -= 1


def mix_general(task: Path, out: Path, *, general: Path | None = None,
                share: float = DEFAULT_SHARE, seed: int = 0) -> MixResult:
    """Write task + general examples to `out` (atomically), general being `share` of the total.

    Without `general`, the small hand-written sample shipped with tunebridge is used.
    """
    with ExitStack() as stack:
        if general is None:
            sample = resources.files(__name__) / GENERAL_SAMPLE
            general = stack.enter_context(resources.as_file(sample))
        return _mix(Path(task), Path(out), Path(general), share, seed)


def _mix(task: Path, out: Path, general: Path, share: float, seed: int) -> MixResult:
    task_count, available = _count(task), _count(general)
    wanted = general_count(task_count, share)
    if wanted and not available:
        raise ValueError(f"{general} holds no examples to mix in")
    rng = random.Random(seed)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as sink:
            _interleave(sink, _examples(task), task_count,
                        _selected(general, available, wanted, rng), wanted, rng)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    total = task_count + wanted
    return MixResult(task_examples=task_count, general_examples=wanted,
                     general_available=available,
                     general_passes=-(-wanted // available) if available else 0,
                     share=wanted / total if total else 0.0)


def _interleave(sink: BinaryIO, task: Iterator[bytes], task_left: int, general: Iterator[bytes],
                general_left: int, rng: random.Random) -> None:
    """Each next line is general with probability general_left / lines_left: a uniformly random
    interleaving that keeps each stream's own order."""
    write = sink.write
    while task_left or general_left:
        if rng.random() * (task_left + general_left) < general_left:
            write(next(general))
            general_left -= 1
        else:
            write(next(task))
            task_left -= 1
