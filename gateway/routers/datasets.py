from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from gateway.dependencies import DatasetWriteKey, ReadKey, RuntimeDep
from gateway.schemas import DatasetPublic
from storage.blobs import BlobTooLarge, StagedBlob
from storage.decompression import (
    CorruptGzip,
    DecompressionBomb,
    GzipDecompressor,
    gunzip_chunks,
    sniff_gzip,
)
from tunebridge import datasets
from tunebridge.errors import DecompressionRefused, InvalidInput, PayloadTooLarge, Problem
from tunebridge.runtime import Runtime

router = APIRouter(prefix="/api/datasets", tags=["datasets"])

CHUNK = 1 << 20
# Validation is CPU-bound Python: many at once would starve the event loop of the GIL (Slack's
# 3 s ack, reads). Two at a time keep the cores busy; further uploads wait, already staged.
VALIDATION_SLOTS = 2


def _validation_gate(request: Request) -> asyncio.Semaphore:
    state = request.app.state
    if getattr(state, "validation_gate", None) is None:
        state.validation_gate = asyncio.Semaphore(VALIDATION_SLOTS)
    gate: asyncio.Semaphore = state.validation_gate
    return gate


def _stream_gate(request: Request, runtime: Runtime) -> asyncio.Semaphore:
    """Bodies read at once. Each one read costs the event loop a callback per chunk, so a
    hundred at once make every other request (a Slack ack) wait behind a hundred callbacks;
    the rest wait unread, held back by TCP, and the total throughput is the same."""
    state = request.app.state
    if getattr(state, "stream_gate", None) is None:
        state.stream_gate = asyncio.Semaphore(runtime.settings.max_concurrent_uploads)
    gate: asyncio.Semaphore = state.stream_gate
    return gate


async def _file_chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(CHUNK):
        yield chunk


async def _decoded(chunks: AsyncIterable[bytes], runtime: Runtime, *, gzip: bool
                   ) -> AsyncIterator[bytes]:
    """The body as JSONL: gunzipped while streaming when declared (Content-Encoding, a `.gz`
    name) or when it starts with gzip's magic bytes."""
    magic, replay = await sniff_gzip(chunks)
    if not (gzip or magic):
        return replay
    return gunzip_chunks(replay, GzipDecompressor(runtime.settings.max_gzip_ratio))


def _label(name: str) -> str:
    return name.removesuffix(".gz") if name.endswith(".gz") else name


async def stage_upload(request: Request, runtime: Runtime, filename: str | None
                 ) -> tuple[StagedBlob, str]:
    """Stream the body into the blob store; the upload cap counts decompressed bytes."""
    limit = runtime.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise PayloadTooLarge(limit)
    encoded = request.headers.get("content-encoding", "").strip().lower() == "gzip"
    async with _stream_gate(request, runtime):
        return await _stage(request, runtime, filename, encoded=encoded)


async def _stage(request: Request, runtime: Runtime, filename: str | None, *, encoded: bool
                 ) -> tuple[StagedBlob, str]:
    limit = runtime.settings.max_upload_bytes
    try:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form(max_files=1, max_fields=4)
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise InvalidInput("missing_file", "Send the JSONL as a multipart field 'file'.")
            name = upload.filename or filename or "upload.jsonl"
            body = await _decoded(_file_chunks(upload), runtime, gzip=name.endswith(".gz"))
            staged = await runtime.blobs.stage_async(body, max_bytes=limit)
            return staged, _label(name)
        name = filename or "upload.jsonl"
        body = await _decoded(request.stream(), runtime, gzip=encoded or name.endswith(".gz"))
        staged = await runtime.blobs.stage_async(body, max_bytes=limit)
        return staged, _label(name)
    except BlobTooLarge:
        raise PayloadTooLarge(limit) from None
    except DecompressionBomb as bomb:
        raise DecompressionRefused(bomb.max_ratio, bomb.compressed, bomb.decompressed) from None
    except CorruptGzip as exc:
        raise InvalidInput("invalid_gzip", f"The upload is marked or looks gzip-compressed but "
                           f"is {exc}.", [Problem("invalid_gzip", str(exc))]) from None


@router.post("", status_code=201, response_model=DatasetPublic)
async def upload_dataset(
    request: Request, response: Response, runtime: RuntimeDep, key: DatasetWriteKey,
    filename: str | None = Query(default=None, max_length=255),
) -> DatasetPublic:
    """Raw JSONL body (`Content-Type: application/jsonl`) or multipart field `file`; gzip
    (`Content-Encoding: gzip`, a `.jsonl.gz` name, or gzip bytes) is decompressed while
    streaming, with a decompression-bomb guard (`max_gzip_ratio`)."""
    staged, name = await stage_upload(request, runtime, filename)
    async with _validation_gate(request):
        stored = await run_in_threadpool(
            lambda: datasets.store_dataset(
                db=runtime.db, blobs=runtime.blobs, clock=runtime.clock, staged=staged,
                filename=name, creator=f"key:{key.name}", limits=runtime.validation_limits))
    if not stored.created:
        response.status_code = 200
    return DatasetPublic.model_validate(stored.dataset)


@router.get("/{dataset_id}", response_model=DatasetPublic)
def get_dataset(dataset_id: str, runtime: RuntimeDep, _: ReadKey) -> DatasetPublic:
    return DatasetPublic.model_validate(datasets.get_dataset(db=runtime.db, dataset_id=dataset_id))
