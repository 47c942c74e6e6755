"""Splitting a byte stream into lines with a length guard, so one giant line cannot exhaust memory.

Uploads arrive in chunks of any size; the splitter carries a partial line between chunks and
drops a line's bytes once it passes `max_line_bytes`, reporting only its length (an int).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

CHUNK_BYTES = 1 << 20


class LineSplitter:
    """Feed chunks, get complete lines (without the newline); an int is an overlong line's size."""

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._pending: list[bytes] = []
        self._size = 0  # bytes of the current partial line, kept or dropped
        self._overflow = False

    def feed(self, chunk: bytes) -> Iterator[bytes | int]:
        pieces = chunk.split(b"\n")
        for piece in pieces[:-1]:
            yield self._complete(piece)
        self._hold(pieces[-1])

    def finish(self) -> Iterator[bytes | int]:
        """The last line, when the stream does not end with a newline."""
        if self._size:
            yield self._complete(b"")

    def _hold(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._overflow or not piece:
            return
        self._pending.append(piece)
        if self._size > self.max_line_bytes:
            self._pending, self._overflow = [], True

    def _complete(self, piece: bytes) -> bytes | int:
        size = self._size + len(piece)
        line: bytes | int
        if self._overflow or size > self.max_line_bytes:
            line = size
        elif self._pending:
            line = b"".join([*self._pending, piece])
        else:
            line = piece
        self._pending, self._size, self._overflow = [], 0, False
        return line


def iter_lines(path: Path, max_line_bytes: int, chunk_bytes: int = CHUNK_BYTES
               ) -> Iterator[bytes | int]:
    """Every line of a file in order (1-based numbering is the caller's enumerate)."""
    splitter = LineSplitter(max_line_bytes)
    with Path(path).open("rb") as stream:
        while chunk := stream.read(chunk_bytes):
            yield from splitter.feed(chunk)
    yield from splitter.finish()
