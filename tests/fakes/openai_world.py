"""The simulated OpenAI account behind the fake server: files, uploads and their paging.

The HTTP layer (`openai_server.py`) only parses and routes; every object the SDK sees is built
here, shaped after the API reference and the SDK's own types (`openai.types.file_object`,
`upload`, `uploads.upload_part`), because the SDK validates nothing and a drifting fake would go
unnoticed. Fine-tuning jobs live in `openai_jobs.py`, which extends this class.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

FILE_PURPOSES = {"assistants", "batch", "fine-tune", "vision", "user_data", "evals"}
UPLOAD_TTL_S = 3600


class ApiError(Exception):
    """An error the fake answers in OpenAI's `{"error": {...}}` shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": kind, "param": param, "code": code}}


def page(items: Sequence[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    """Cursor paging as the API does it: `after` is the id of the last item already seen.

    `items` are already in the order the endpoint lists them (newest first for jobs and events).
    An unknown `after` gives an empty page rather than the first page again, so a client that
    loses its place stops instead of looping.
    """
    start = 0
    if after:
        ids = [item["id"] for item in items]
        start = ids.index(after) + 1 if after in ids else len(items)
    chunk = list(items[start : start + limit])
    return {
        "object": "list",
        "data": chunk,
        "has_more": start + limit < len(items),
        "first_id": chunk[0]["id"] if chunk else None,
        "last_id": chunk[-1]["id"] if chunk else None,
    }


@dataclass
class PendingUpload:
    obj: dict[str, Any]
    parts: dict[str, bytes] = field(default_factory=dict)


class FileStore:
    """Files and multi-part uploads; thread-safe because the HTTP server is threaded."""

    def __init__(self, *, seed: int = 0, org: str = "org-fake") -> None:
        self.lock = threading.RLock()
        self.rng = random.Random(seed)
        self.org = org
        self.now = 1_760_000_000
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.uploads: dict[str, PendingUpload] = {}

    def new_id(self, prefix: str) -> str:
        """Random, unordered ids like the real API's: clients must never sort by id."""
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        return prefix + "".join(self.rng.choice(alphabet) for _ in range(24))

    def create_file(
        self, filename: str, content: bytes, purpose: str, *, system: bool = False
    ) -> dict[str, Any]:
        """Store a file; `system` files (job results) may use purposes clients cannot upload."""
        if purpose not in FILE_PURPOSES and not system:
            raise ApiError(400, f"Invalid value for 'purpose': {purpose!r}.", param="purpose")
        with self.lock:
            file_id = self.new_id("file-")
            obj = {
                "id": file_id,
                "object": "file",
                "bytes": len(content),
                "created_at": self.now,
                "filename": filename,
                "purpose": purpose,
                "status": "processed",
                "status_details": None,
                "expires_at": None,
            }
            self.files[file_id] = obj
            self.contents[file_id] = content
            return dict(obj)

    def get_file(self, file_id: str) -> dict[str, Any]:
        with self.lock:
            if file_id not in self.files:
                raise ApiError(404, f"No such File object: {file_id}", param="id")
            return dict(self.files[file_id])

    def list_files(self, query: Mapping[str, str]) -> dict[str, Any]:
        """GET /v1/files: `purpose` filter, `order` (default desc), `after`, `limit` (10,000)."""
        with self.lock:
            items = [f for f in self.files.values() if query.get("purpose") in (None, f["purpose"])]
        if query.get("order", "desc") == "desc":
            items.reverse()
        return page(items, query.get("after"), int(query.get("limit", 10_000)))

    def create_upload(self, body: Mapping[str, Any]) -> dict[str, Any]:
        for name in ("bytes", "filename", "mime_type", "purpose"):
            if name not in body:
                raise ApiError(400, f"Missing required parameter: '{name}'.", param=name)
        if body["purpose"] == "fine-tune" and body["mime_type"] not in ("text/jsonl",):
            raise ApiError(400, "Invalid mime type for purpose 'fine-tune'.", param="mime_type")
        with self.lock:
            upload_id = self.new_id("upload_")
            obj = {
                "id": upload_id,
                "object": "upload",
                "bytes": int(body["bytes"]),
                "created_at": self.now,
                "expires_at": self.now + UPLOAD_TTL_S,
                "filename": body["filename"],
                "purpose": body["purpose"],
                "status": "pending",
                "file": None,
            }
            self.uploads[upload_id] = PendingUpload(obj)
            return dict(obj)

    def add_part(self, upload_id: str, data: bytes) -> dict[str, Any]:
        with self.lock:
            upload = self._pending(upload_id)
            part_id = self.new_id("part_")
            upload.parts[part_id] = data
            return {
                "id": part_id,
                "object": "upload.part",
                "created_at": self.now,
                "upload_id": upload_id,
            }

    def complete_upload(self, upload_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Assemble parts in the given order; sizes and the optional md5 must match."""
        with self.lock:
            upload = self._pending(upload_id)
            part_ids = list(body.get("part_ids") or [])
            unknown = [p for p in part_ids if p not in upload.parts]
            if unknown:
                raise ApiError(400, f"Unknown part ids: {unknown}", param="part_ids")
            content = b"".join(upload.parts[p] for p in part_ids)
            if len(content) != upload.obj["bytes"]:
                raise ApiError(
                    400,
                    f"Upload declared {upload.obj['bytes']} bytes but parts hold {len(content)}.",
                    param="part_ids",
                )
            md5 = body.get("md5")
            if md5 and hashlib.md5(content).hexdigest() != md5:
                raise ApiError(400, "md5 checksum does not match the uploaded bytes.", param="md5")
            file_obj = self.create_file(upload.obj["filename"], content, upload.obj["purpose"])
            upload.obj.update(status="completed", file=file_obj)
            return dict(upload.obj)

    def _pending(self, upload_id: str) -> PendingUpload:
        upload = self.uploads.get(upload_id)
        if upload is None:
            raise ApiError(404, f"No such Upload: {upload_id}", param="upload_id")
        if upload.obj["status"] != "pending":
            raise ApiError(400, f"Upload {upload_id} is already {upload.obj['status']}.")
        return upload
