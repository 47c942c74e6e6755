"""SQLModel tables: the persisted shape of tunebridge's domain.

Columns are plain types (status is `str`) so storage depends on nothing above it; the services
own the meaning (JobStatus, transitions, scopes).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.columns import UTCDateTime, json_column_type


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(json_column_type(), nullable=nullable))


def _json_required(factory: Any) -> Any:
    return Field(default_factory=factory, sa_column=Column(json_column_type(), nullable=False))


def _when(nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class Dataset(SQLModel, table=True):
    __tablename__ = "datasets"

    id: str = Field(primary_key=True, max_length=40)
    sha256: str = Field(max_length=64, unique=True)
    filename: str = Field(max_length=255)
    format: str = Field(max_length=32)
    num_examples: int
    size_bytes: int
    blob_path: str = Field(max_length=512)
    report: dict[str, Any] | None = _json()
    created_by: str = Field(max_length=120)
    created_at: datetime = _when()


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_id", "status", "id"),)

    id: str = Field(primary_key=True, max_length=40)
    backend: str = Field(max_length=32)
    external_id: str | None = Field(default=None, max_length=120, index=True)
    base_model: str = Field(max_length=200)
    method: str = Field(max_length=16)
    status: str = Field(max_length=24)
    training_dataset_id: str = Field(foreign_key="datasets.id", max_length=40)
    validation_dataset_id: str | None = Field(
        default=None, foreign_key="datasets.id", max_length=40
    )
    hyperparameters: dict[str, Any] = _json_required(dict)
    options: dict[str, Any] = _json_required(dict)
    suffix: str | None = Field(default=None, max_length=64)
    creator: str = Field(max_length=120, index=True)
    slack_channel: str | None = Field(default=None, max_length=64)
    slack_thread_ts: str | None = Field(default=None, max_length=32)
    idempotency_key: str | None = Field(default=None, max_length=255)
    estimate: dict[str, Any] | None = _json()
    handle: dict[str, Any] | None = _json()
    poll_cursor: str | None = Field(default=None, max_length=4000)
    result: dict[str, Any] | None = _json()
    error: dict[str, Any] | None = _json()
    created_at: datetime = _when()
    updated_at: datetime = _when()
    started_at: datetime | None = _when(nullable=True)
    finished_at: datetime | None = _when(nullable=True)
    next_poll_at: datetime | None = _when(nullable=True)


class JobEvent(SQLModel, table=True):
    __tablename__ = "job_events"
    __table_args__ = (UniqueConstraint("job_id", "dedupe_key", name="uq_job_events_dedupe"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="jobs.id", index=True, max_length=40)
    kind: str = Field(max_length=24)
    level: str = Field(default="info", max_length=16)
    message: str
    from_status: str | None = Field(default=None, max_length=24)
    to_status: str | None = Field(default=None, max_length=24)
    dedupe_key: str | None = Field(default=None, max_length=200)
    data: dict[str, Any] | None = _json()
    created_at: datetime = _when()


class MetricPoint(SQLModel, table=True):
    __tablename__ = "metric_points"
    __table_args__ = (UniqueConstraint("job_id", "step", name="uq_metric_points_job_step"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="jobs.id", index=True, max_length=40)
    step: int
    epoch: float | None = None
    train_loss: float | None = None
    eval_loss: float | None = None
    grad_norm: float | None = None
    learning_rate: float | None = None
    token_accuracy: float | None = None
    eval_token_accuracy: float | None = None
    extra: dict[str, Any] | None = _json()
    created_at: datetime = _when()


class Notification(SQLModel, table=True):
    """The outbox: written in the same transaction as the change it reports."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_state_id", "state", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(max_length=200, unique=True)
    job_id: str | None = Field(default=None, foreign_key="jobs.id", index=True, max_length=40)
    channel: str | None = Field(default=None, max_length=64)
    kind: str = Field(max_length=32)
    payload: dict[str, Any] = _json_required(dict)
    state: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: datetime | None = _when(nullable=True)
    last_error: str | None = None
    receipt: dict[str, Any] | None = _json()
    created_at: datetime = _when()
    sent_at: datetime | None = _when(nullable=True)


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=120)
    prefix: str = Field(max_length=16)
    key_hash: str = Field(max_length=64, unique=True)
    scopes: list[str] = _json_required(list)
    created_at: datetime = _when()
    revoked_at: datetime | None = _when(nullable=True)
    last_used_at: datetime | None = _when(nullable=True)


class AuditLog(SQLModel, table=True):
    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    actor: str = Field(max_length=120)
    action: str = Field(max_length=64)
    job_id: str | None = Field(default=None, index=True, max_length=40)
    source: str = Field(max_length=16)
    remote: str | None = Field(default=None, max_length=255)
    detail: dict[str, Any] | None = _json()
    created_at: datetime = _when()


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("scope", "key", name="uq_idempotency_scope_key"),)

    id: int | None = Field(default=None, primary_key=True)
    scope: str = Field(max_length=64)
    key: str = Field(max_length=255)
    request_hash: str = Field(max_length=64)
    state: str = Field(default="pending", max_length=16)
    status_code: int | None = None
    response_body: str | None = None
    response_headers: dict[str, Any] | None = _json()
    created_at: datetime = _when(index=True)


class Subscription(SQLModel, table=True):
    """A Slack channel that follows every job ("*") or one backend's, besides each job's own."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("channel", "backend", name="uq_subscriptions_channel_backend"),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=64, index=True)
    backend: str = Field(max_length=32)  # "*" for all backends
    created_by: str = Field(max_length=120)
    created_at: datetime = _when()
