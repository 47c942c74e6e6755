"""Content-addressed dataset files: a name is the sha256 of the bytes, never a user's filename."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass
from pathlib import Path


class BlobTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"upload exceeds {limit} bytes")
        self.limit = limit


@dataclass(frozen=True)
class StagedBlob:
    """Bytes written to a private temp file; invisible until `BlobStore.commit`."""

    temp_path: Path
    sha256: str
    size: int


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._staging = root / ".staging"
        self._staging.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.jsonl"

    def stage(self, chunks: Iterable[bytes], *, max_bytes: int) -> StagedBlob:
        writer = _StagingWriter(self._staging, max_bytes)
        try:
            for chunk in chunks:
                writer.write(chunk)
            return writer.finish()
        except BaseException:
            writer.abort()
            raise

    async def stage_async(self, chunks: AsyncIterable[bytes], *, max_bytes: int) -> StagedBlob:
        """Hashing and writing run in a worker thread (both release the GIL), so a hundred
        concurrent uploads do not stall the event loop that answers everyone else."""
        writer = _StagingWriter(self._staging, max_bytes)
        try:
            async for chunk in chunks:
                await asyncio.to_thread(writer.write, chunk)
            return await asyncio.to_thread(writer.finish)
        except BaseException:
            writer.abort()
            raise

    def commit(self, staged: StagedBlob) -> Path:
        """Atomic rename into place; the same bytes land on the same path exactly once."""
        final = self.path_for(staged.sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            staged.temp_path.unlink(missing_ok=True)
        else:
            os.replace(staged.temp_path, final)
        return final

    def discard(self, staged: StagedBlob) -> None:
        staged.temp_path.unlink(missing_ok=True)

    def clear_staging(self, older_than_s: float = 6 * 3600) -> None:
        """Remove half-written uploads left by a crash. Only old ones: another process sharing
        this store may be streaming an upload right now. (They are never visible either way:
        a dataset row exists only for committed blobs.)"""
        cutoff = time.time() - older_than_s
        for leftover in self._staging.glob("*.part"):
            with contextlib.suppress(FileNotFoundError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()


class _StagingWriter:
    """Hashes while writing so a multi-GB upload is read exactly once and never held in memory."""

    def __init__(self, staging: Path, max_bytes: int) -> None:
        fd, name = tempfile.mkstemp(dir=staging, suffix=".part")
        self.path = Path(name)
        self._out = os.fdopen(fd, "wb")
        self._digest = hashlib.sha256()
        self._size = 0
        self._max_bytes = max_bytes

    def write(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._max_bytes:
            raise BlobTooLarge(self._max_bytes)
        self._digest.update(chunk)
        self._out.write(chunk)

    def finish(self) -> StagedBlob:
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        return StagedBlob(temp_path=self.path, sha256=self._digest.hexdigest(), size=self._size)

    def abort(self) -> None:
        self._out.close()
        self.path.unlink(missing_ok=True)
