"""Dataset use cases: accept staged bytes, validate, store once per content hash."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError

from storage.blobs import BlobStore, StagedBlob
from storage.database import Database
from storage.repositories.datasets import DatasetRepository
from storage.tables import Dataset
from tunebridge.clock import Clock, new_id
from tunebridge.errors import InvalidInput, NotFound, Problem
from tunebridge.mixing import BUILTIN_GENERAL, GeneralMix, builtin_general_path, mixed_chunks
from tunebridge.validation import CHAT, validate_file


@dataclass(frozen=True)
class StoredDataset:
    dataset: Dataset
    created: bool  # False when the same bytes were uploaded before


@dataclass(frozen=True)
class ValidationLimits:
    max_reported: int = 100
    max_line_bytes: int = 8 << 20
    workers: int = 1  # processes for a file of 64 MB or more (see validation/parallel.py)


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
                           max_line_bytes=limits.max_line_bytes, workers=limits.workers)
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


@dataclass(frozen=True)
class MixedDataset:
    """The dataset a job trains on after its forgetting guard, and what went into it."""

    dataset: Dataset
    created: bool
    details: dict[str, Any]  # task/general dataset ids and example counts, for the job record


def _general_source(db: Database, mix: GeneralMix, task: Dataset) -> tuple[Path, str]:
    """The general file and its format: the bundled sample (chat) or a stored dataset."""
    if mix.dataset_id == BUILTIN_GENERAL:
        path, fmt = builtin_general_path(), CHAT
    else:
        general = get_dataset(db=db, dataset_id=mix.dataset_id)
        path, fmt = Path(general.blob_path), general.format
    if fmt != task.format:
        raise InvalidInput(
            "general_mix_format_mismatch",
            f"General dataset {mix.dataset_id} is {fmt} but the training set is {task.format}; "
            "only examples of the same format can be mixed.",
            [Problem("general_mix_format_mismatch", "Mix data of the training set's format.",
                     field="general_mix.dataset_id")])
    return path, fmt


def mix_general_dataset(
    *, db: Database, blobs: BlobStore, clock: Clock, task: Dataset, mix: GeneralMix,
    creator: str, limits: ValidationLimits,
) -> MixedDataset:
    """Build task + round(fraction x task) general examples, streamed into the blob store and
    validated as an upload; the same inputs and seed give the same dataset (same sha256)."""
    general_path, _ = _general_source(db, mix, task)
    result, chunks = mixed_chunks(Path(task.blob_path), general_path,
                                  count=mix.count(task.num_examples), seed=mix.seed)
    staged = blobs.stage(chunks, max_bytes=sys.maxsize)
    stored = store_dataset(
        db=db, blobs=blobs, clock=clock, staged=staged, creator=creator, limits=limits,
        filename=f"{task.id}+{mix.dataset_id.replace(':', '-')}-{mix.fraction:g}-"
                 f"seed{mix.seed}.jsonl")
    details = {
        "task_dataset_id": task.id, "general_dataset_id": mix.dataset_id,
        "mixed_dataset_id": stored.dataset.id, "fraction": mix.fraction, "seed": mix.seed,
        "task_examples": result.task_examples, "general_examples": result.general_examples,
        "general_available": result.general_available, "general_passes": result.general_passes,
        "sha256": stored.dataset.sha256,
    }
    return MixedDataset(dataset=stored.dataset, created=stored.created, details=details)
