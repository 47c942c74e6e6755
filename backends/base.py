"""The contract between tunebridge's services and any fine-tuning provider.

Backends speak in their own small types (never storage rows or HTTP models) so that a backend can
be tested, and even run in another process, without the rest of the product.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


class RemoteStatus(StrEnum):
    """What the provider says about a job; the services map it onto JobStatus."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class JobSpec:
    """Everything a backend needs to start one job; built by the services from a Job row."""

    job_id: str
    base_model: str
    method: str  # "sft" | "dpo"
    hyperparameters: Mapping[str, Any]
    training_file: Path
    validation_file: Path | None = None
    suffix: str | None = None
    seed: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Handle:
    """A backend's reference to a submitted job; `state` must be JSON-serialisable."""

    external_id: str
    state: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricSample:
    step: int
    epoch: float | None = None
    train_loss: float | None = None
    eval_loss: float | None = None
    grad_norm: float | None = None
    learning_rate: float | None = None
    token_accuracy: float | None = None
    eval_token_accuracy: float | None = None
    extra: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class BackendEvent:
    """A provider-side event. `event_id` must be stable so that replays are stored once."""

    event_id: str
    message: str
    level: str = "info"
    created_at: datetime | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Update:
    """What one poll learned. `cursor` is opaque to the services and handed back next poll."""

    status: RemoteStatus
    metrics: Sequence[MetricSample] = ()
    events: Sequence[BackendEvent] = ()
    cursor: str | None = None
    result: Mapping[str, Any] | None = None
    error: Mapping[str, Any] | None = None


class BackendError(Exception):
    """A provider failure. `retryable` errors never fail a job; the poller backs off instead."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after

    @property
    def is_configuration(self) -> bool:
        """True when our credentials or settings are wrong (not the job): alert, never fail."""
        return False


@runtime_checkable
class Backend(Protocol):
    """A fine-tuning provider. All three calls must be safe to repeat after a crash."""

    name: str

    async def submit(self, spec: JobSpec) -> Handle: ...

    async def poll(self, handle: Handle, cursor: str | None) -> Update: ...

    async def cancel(self, handle: Handle) -> None: ...


@runtime_checkable
class BatchPolling(Protocol):
    """Optional for a Backend: polls of these jobs made inside the context may use what it read
    on entry for all of them (e.g. one list request for a hundred statuses). It must not raise
    a job's BackendError on entry: the poll of that job raises it."""

    def poll_cycle(self, handles: Sequence[Handle]) -> AbstractAsyncContextManager[None]: ...
