"""Dataset use cases: accept staged bytes, validate, store once per content hash."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from storage.blobs import BlobStore, StagedBlob
from storage.database import Database
from storage.repositories.datasets import DatasetRepository
from storage.tables import Dataset
from tunebridge.clock import Clock, new_id
from tunebridge.errors import InvalidInput, NotFound
from tunebridge.validation import validate_file


@dataclass(frozen=True)
class StoredDataset:
    dataset: Dataset
    created: bool  # False when the same bytes were uploaded before


@dataclass(frozen=True)
class ValidationLimits:
    max_reported: int = 100
    max_line_bytes: int = 8 << 20


def _existing(db: Database, sha256: str) -> Dataset | None:
    with db.session() as session:
        return DatasetRepository(session).by_sha256(sha256)


def store_dataset(
    *, db: Database, blobs: BlobStore, clock: Clock, staged: StagedBlob, filename: str,
    creator: str, limits: ValidationLimits,
) -> StoredDataset:
    """The row appears only after the blob is complete, so no half-written dataset is visible.

    Invalid files are refused with every problem located by line; nothing is kept.
    """
    existing = _existing(db, staged.sha256)
    if existing is not None:
        blobs.discard(staged)
        return StoredDataset(dataset=existing, created=False)
    report = validate_file(staged.temp_path, max_reported=limits.max_reported,
                           max_line_bytes=limits.max_line_bytes)
    if not report.ok:
        blobs.discard(staged)
        raise InvalidInput(
            "invalid_dataset",
            f"The file has {report.error_count} error(s); the first is on line "
            f"{next((p.line for p in report.problems if p.severity == 'error'), '?')}.",
            problems=list(report.problems),
            details={"counts": report.as_dict()["counts"], "sha256": staged.sha256},
        )
    path = blobs.commit(staged)
    dataset = Dataset(
        id=new_id("ds"), sha256=staged.sha256, filename=_safe_name(filename),
        format=report.format or "unknown", num_examples=report.num_examples,
        size_bytes=staged.size, blob_path=str(path), report=report.as_dict(),
        created_by=creator, created_at=clock.now(),
    )
    try:
        with db.session() as session:
            DatasetRepository(session).add(dataset)
    except IntegrityError:
        # A concurrent upload of the same bytes won the race; theirs is ours.
        winner = _existing(db, staged.sha256)
        if winner is None:
            raise
        return StoredDataset(dataset=winner, created=False)
    return StoredDataset(dataset=dataset, created=True)


def _safe_name(filename: str) -> str:
    """Kept only as a label: the store never uses it as a path."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in name if ch.isprintable())
    return cleaned[:255] or "upload.jsonl"


def get_dataset(*, db: Database, dataset_id: str) -> Dataset:
    with db.session() as session:
        dataset = DatasetRepository(session).get(dataset_id)
    if dataset is None:
        raise NotFound("dataset", dataset_id)
    return dataset
