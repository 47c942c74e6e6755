"""Streaming gunzip for uploads, guarded against decompression bombs.

A 1 MB gzip body can hold 1 GB of zeros. Output is produced in bounded pieces (`max_length`),
so one chunk of input never inflates to more than `_PIECE` bytes at a time, and the ratio of
bytes produced to compressed bytes actually consumed is checked after every piece. Ordinary
JSONL compresses 5-20x; the default guard refuses anything past 200x (after the first MiB,
so tiny, very repetitive files are not refused). The total is capped by the blob store's
upload limit, which counts the decompressed bytes.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterable, AsyncIterator, Iterator

GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_MAX_RATIO = 200.0
_PIECE = 256 << 10
_UNGUARDED = 1 << 20  # output below this is never refused for its ratio
_GZIP_WBITS = 31  # zlib: gzip header and trailer


class DecompressionBomb(Exception):
    def __init__(self, max_ratio: float, compressed: int, decompressed: int) -> None:
        super().__init__(f"{compressed} compressed bytes inflated to {decompressed} and more "
                         f"(over {max_ratio:g}x)")
        self.max_ratio = max_ratio
        self.compressed = compressed
        self.decompressed = decompressed


class CorruptGzip(Exception):
    pass


class GzipDecompressor:
    """Feed compressed chunks, get decompressed pieces; `finish` checks the stream ended.

    Concatenated gzip members (what `cat a.gz b.gz` makes) decompress as one stream.
    """

    def __init__(self, max_ratio: float = DEFAULT_MAX_RATIO) -> None:
        self.max_ratio = max_ratio
        self.compressed = 0  # bytes consumed by zlib so far
        self.decompressed = 0
        self._fed = False
        self._zlib = zlib.decompressobj(_GZIP_WBITS)

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        self._fed = self._fed or bool(chunk)
        data = chunk
        while data:
            yield from self._inflate(data)
            data = self._zlib.unused_data if self._zlib.eof else b""
            if data:  # another gzip member follows
                self._zlib = zlib.decompressobj(_GZIP_WBITS)

    def _inflate(self, data: bytes) -> Iterator[bytes]:
        """One member's worth of `data`, in pieces of at most _PIECE bytes."""
        while True:
            try:
                out = self._zlib.decompress(data, _PIECE)
            except zlib.error as exc:
                raise CorruptGzip(f"not valid gzip ({exc})") from None
            tail = self._zlib.unconsumed_tail
            self.compressed += len(data) - len(tail) - len(self._zlib.unused_data)
            self.decompressed += len(out)
            self._guard()
            if out:
                yield out
            if self._zlib.eof or (not tail and len(out) < _PIECE):
                return
            data = tail  # a full piece may leave output pending even with all input taken

    def finish(self) -> None:
        if self._fed and not self._zlib.eof:
            raise CorruptGzip("the gzip stream is truncated")

    def _guard(self) -> None:
        if (self.decompressed > _UNGUARDED
                and self.decompressed > self.max_ratio * max(self.compressed, 1)):
            raise DecompressionBomb(self.max_ratio, self.compressed, self.decompressed)


async def gunzip_chunks(chunks: AsyncIterable[bytes], decompressor: GzipDecompressor
                        ) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        for piece in decompressor.feed(chunk):
            yield piece
    decompressor.finish()


async def sniff_gzip(chunks: AsyncIterable[bytes]) -> tuple[bool, AsyncIterator[bytes]]:
    """Whether the stream starts with gzip's magic bytes, and the same stream, unconsumed."""
    iterator = aiter(chunks)
    head = b""
    async for chunk in iterator:
        head += chunk
        if len(head) >= len(GZIP_MAGIC):
            break

    async def replay() -> AsyncIterator[bytes]:
        if head:
            yield head
        async for chunk in iterator:
            yield chunk

    return head.startswith(GZIP_MAGIC), replay()


def is_gzip_file(path: str) -> bool:
    with open(path, "rb") as stream:
        return stream.read(len(GZIP_MAGIC)) == GZIP_MAGIC
