"""Upload validated JSONL with purpose `fine-tune`, once.

Small files go in one `files.create`; larger ones through the Uploads API (create, parts,
complete with md5) because one request is limited and fragile for big bodies. The file name
carries our job id and the content hash, so after a crash between upload and job creation the
next attempt finds the file among the newest fine-tune files and reuses it instead of uploading
again. That search only looks at the newest `adopt_scan` files: if many uploads land in between,
a duplicate (harmless, free) file is uploaded; duplicate *jobs* are prevented separately.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI
from openai.types import FileObject

from backends.openai.errors import OpenAIBackendError

Call = Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]
MIME_TYPE = "text/jsonl"
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class LocalFile:
    path: Path
    size: int
    sha256: str
    md5: str

    def remote_name(self, job_id: str, role: str) -> str:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", job_id)[:64]
        return f"tunebridge-{safe}-{role}-{self.sha256[:16]}.jsonl"


def describe(path: Path) -> LocalFile:
    """Hash in chunks so a multi-gigabyte file never sits in memory."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return LocalFile(path, size, sha.hexdigest(), md5.hexdigest())


def read_range(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read(length)


class FileUploader:
    """Owns the file half of `submit`; every request goes through the backend's bounded `call`."""

    def __init__(
        self,
        client: AsyncOpenAI,
        call: Call,
        *,
        single_upload_limit: int,
        part_size: int,
        adopt_scan: int = 100,
    ) -> None:
        if part_size <= 0 or single_upload_limit <= 0:
            raise ValueError("part_size and single_upload_limit must be positive")
        self._client = client
        self._call = call
        self._single_limit = single_upload_limit
        self._part_size = part_size
        self._adopt_scan = adopt_scan

    async def ensure(self, path: Path, job_id: str, role: str) -> str:
        """Return the id of a `fine-tune` file holding exactly these bytes, uploading if needed."""
        local = await asyncio.to_thread(describe, path)
        name = local.remote_name(job_id, role)
        existing = await self._find(name, local.size)
        if existing is not None:
            return existing.id
        if local.size <= self._single_limit:
            return await self._upload_single(local, name)
        return await self._upload_parts(local, name)

    async def _find(self, name: str, size: int) -> FileObject | None:
        if self._adopt_scan <= 0:
            return None
        limit = min(self._adopt_scan, 10_000)
        page = await self._call(
            "list files",
            lambda: self._client.files.list(purpose="fine-tune", order="desc", limit=limit),
        )
        for file in page.data:
            if file.filename == name and file.bytes == size and file.status != "error":
                return file
        return None

    async def _upload_single(self, local: LocalFile, name: str) -> str:
        content = await asyncio.to_thread(local.path.read_bytes)
        created = await self._call(
            f"upload {name}",
            lambda: self._client.files.create(
                file=(name, content, "application/jsonl"), purpose="fine-tune"
            ),
        )
        return str(created.id)

    async def _upload_parts(self, local: LocalFile, name: str) -> str:
        """Uploads API: parts are sent one at a time so memory stays at one part."""
        uploads = self._client.uploads
        upload = await self._call(
            f"create upload {name}",
            lambda: uploads.create(
                bytes=local.size, filename=name, mime_type=MIME_TYPE, purpose="fine-tune"
            ),
        )
        part_ids: list[str] = []
        for offset in range(0, local.size, self._part_size):
            data = await asyncio.to_thread(read_range, local.path, offset, self._part_size)
            part = await self._call(
                f"upload part {len(part_ids) + 1} of {name}",
                partial(uploads.parts.create, upload.id, data=data),
            )
            part_ids.append(part.id)
        done = await self._call(
            f"complete upload {name}",
            lambda: uploads.complete(upload.id, part_ids=part_ids, md5=local.md5),
        )
        if done.file is None:
            raise OpenAIBackendError(f"OpenAI completed upload {upload.id} without a file")
        return str(done.file.id)
