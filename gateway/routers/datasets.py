from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from gateway.dependencies import DatasetWriteKey, ReadKey, RuntimeDep
from gateway.schemas import DatasetPublic
from storage.blobs import BlobTooLarge, StagedBlob
from tunebridge import datasets
from tunebridge.errors import InvalidInput, PayloadTooLarge
from tunebridge.runtime import Runtime

router = APIRouter(prefix="/api/datasets", tags=["datasets"])

CHUNK = 1 << 20


async def _file_chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(CHUNK):
        yield chunk


async def stage_upload(request: Request, runtime: Runtime, filename: str | None
                 ) -> tuple[StagedBlob, str]:
    limit = runtime.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise PayloadTooLarge(limit)
    try:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form(max_files=1, max_fields=4)
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise InvalidInput("missing_file", "Send the JSONL as a multipart field 'file'.")
            staged = await runtime.blobs.stage_async(_file_chunks(upload), max_bytes=limit)
            return staged, upload.filename or filename or "upload.jsonl"
        staged = await runtime.blobs.stage_async(request.stream(), max_bytes=limit)
        return staged, filename or "upload.jsonl"
    except BlobTooLarge:
        raise PayloadTooLarge(limit) from None


@router.post("", status_code=201, response_model=DatasetPublic)
async def upload_dataset(
    request: Request, response: Response, runtime: RuntimeDep, key: DatasetWriteKey,
    filename: str | None = Query(default=None, max_length=255),
) -> DatasetPublic:
    """Raw JSONL body (`Content-Type: application/jsonl`) or multipart field `file`."""
    staged, name = await stage_upload(request, runtime, filename)
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
