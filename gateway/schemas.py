"""HTTP models: the ladder's input (…Create) and output (…Public) rungs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class NotifyTarget(BaseModel):
    slack_channel: str | None = Field(default=None, max_length=64)


class JobBase(BaseModel):
    training_dataset_id: str = Field(max_length=40)
    validation_dataset_id: str | None = Field(default=None, max_length=40)
    base_model: str = Field(min_length=1, max_length=200)
    method: Literal["sft", "dpo"] = "sft"
    suffix: str | None = Field(default=None, max_length=64)


class GeneralMixCreate(BaseModel):
    """Forgetting guard: add round(fraction x task examples) examples of a general dataset
    (a dataset id, or `builtin:general` for the sample shipped with tunebridge)."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: str = Field(min_length=1, max_length=40)
    fraction: float = Field(default=0.2, gt=0, le=1)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)


class JobCreate(JobBase):
    model_config = ConfigDict(extra="forbid")

    backend: str | None = Field(default=None, max_length=32)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    notify: NotifyTarget | None = None
    general_mix: GeneralMixCreate | None = None


class JobPublic(JobBase):
    model_config = ConfigDict(from_attributes=True)

    id: str
    object: Literal["job"] = "job"
    backend: str
    external_id: str | None
    status: str
    hyperparameters: dict[str, Any]
    options: dict[str, Any]
    creator: str
    slack_channel: str | None
    estimate: dict[str, Any] | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobCreated(JobPublic):
    warnings: list[dict[str, Any]] = Field(default_factory=list)


class DatasetPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    object: Literal["dataset"] = "dataset"
    sha256: str
    filename: str
    format: str
    num_examples: int
    size_bytes: int
    report: dict[str, Any] | None
    created_by: str
    created_at: datetime


class EventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    level: str
    message: str
    from_status: str | None
    to_status: str | None
    data: dict[str, Any] | None
    created_at: datetime


class MetricPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    step: int
    epoch: float | None
    train_loss: float | None
    eval_loss: float | None
    grad_norm: float | None
    learning_rate: float | None
    token_accuracy: float | None
    eval_token_accuracy: float | None
    extra: dict[str, Any] | None


class Page(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    next_cursor: str | None = None
    has_more: bool = False


class ErrorBody(BaseModel):
    code: str
    message: str
    problems: list[dict[str, Any]] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorEnvelope(BaseModel):
    error: ErrorBody
