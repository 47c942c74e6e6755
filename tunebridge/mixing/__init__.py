"""Forgetting guard: mix general instruction data into a task set (seed: "mix 20% general").

The mixed file is built in streaming passes and constant memory: count both files, pick the
general examples by selection sampling (Knuth's Algorithm S: exactly k of N, uniformly, in one
pass, no index list), and interleave them with the task examples at random positions. The same
inputs, share and seed always give the same bytes. The result is an ordinary JSONL file that
goes through validation like any upload.

Jobs ask for a mix with `GeneralMix` (a fraction of the task set's size, as the issue words it);
`mix_general` takes the seed's share of the total (20% of the total = task // 4).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

DEFAULT_SHARE = 0.2
DEFAULT_FRACTION = 0.2
GENERAL_SAMPLE = "general_instructions.jsonl"
BUILTIN_GENERAL = "builtin:general"  # the id jobs use for the sample shipped with tunebridge
_BOM = b"\xef\xbb\xbf"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class GeneralMix:
    """A job's forgetting guard: add round(fraction x task examples) general examples.

    `dataset_id` is a stored dataset or BUILTIN_GENERAL; the seed makes the mix reproducible
    (same inputs, fraction and seed: the same bytes, so the same content-addressed dataset).
    """

    dataset_id: str
    fraction: float = DEFAULT_FRACTION
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.dataset_id:
            raise ValueError("general_mix.dataset_id is required")
        if isinstance(self.fraction, bool) or not 0 < self.fraction <= 1:
            raise ValueError("general_mix.fraction must be in (0, 1]")

    @classmethod
    def from_value(cls, value: Any) -> GeneralMix:
        """From a request's JSON object; ValueError on anything else."""
        if not isinstance(value, dict) or set(value) - {"dataset_id", "fraction", "seed"}:
            raise ValueError("general_mix must be {dataset_id, fraction?, seed?}")
        fraction, seed = value.get("fraction", DEFAULT_FRACTION), value.get("seed", 0)
        if not isinstance(fraction, int | float) or not isinstance(seed, int):
            raise ValueError("general_mix.fraction must be a number and seed an integer")
        return cls(str(value.get("dataset_id") or ""), float(fraction), int(seed))

    def count(self, task_examples: int) -> int:
        return round(self.fraction * task_examples)


def builtin_general_path() -> Path:
    """The bundled sample as a real file (the package is installed unzipped)."""
    return Path(str(resources.files(__name__) / GENERAL_SAMPLE))


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


def count_examples(path: Path) -> int:
    """Non-blank lines: one example each in a validated file."""
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
    wanted = general_count(count_examples(task), share)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as sink:
            result, chunks = mixed_chunks(task, general, count=wanted, seed=seed)
            _write(sink, chunks)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return result


def _write(sink: BinaryIO, chunks: Iterator[bytes]) -> None:
    for chunk in chunks:
        sink.write(chunk)


def mixed_chunks(task: Path, general: Path, *, count: int, seed: int
                 ) -> tuple[MixResult, Iterator[bytes]]:
    """What the mix will hold, and its bytes in ~1 MiB chunks (for a streaming store).

    Both files are counted first (two cheap passes), so the result is known before a byte is
    written; ValueError when `count` > 0 and the general file is empty.
    """
    task_count, available = count_examples(task), count_examples(general)
    if count and not available:
        raise ValueError(f"{general} holds no examples to mix in")
    total = task_count + count
    result = MixResult(task_examples=task_count, general_examples=count,
                       general_available=available,
                       general_passes=-(-count // available) if available else 0,
                       share=count / total if total else 0.0)
    rng = random.Random(seed)
    lines = _interleave(_examples(task), task_count, _selected(general, available, count, rng),
                        count, rng)
    return result, _chunked(lines)


def _chunked(lines: Iterator[bytes]) -> Iterator[bytes]:
    buffer: list[bytes] = []
    size = 0
    for line in lines:
        buffer.append(line)
        size += len(line)
        if size >= _CHUNK:
            yield b"".join(buffer)
            buffer, size = [], 0
    if buffer:
        yield b"".join(buffer)


def _interleave(task: Iterator[bytes], task_left: int, general: Iterator[bytes],
                general_left: int, rng: random.Random) -> Iterator[bytes]:
    """Each next line is general with probability general_left / lines_left: a uniformly random
    interleaving that keeps each stream's own order."""
    while task_left or general_left:
        if rng.random() * (task_left + general_left) < general_left:
            yield next(general)
            general_left -= 1
        else:
            yield next(task)
            task_left -= 1
