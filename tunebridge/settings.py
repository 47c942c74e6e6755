"""One settings class for the whole product, read from TUNEBRIDGE_* variables and `.env`."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Secrets are SecretStr so that reprs, logs and tracebacks show '**********'."""

    model_config = SettingsConfigDict(
        env_prefix="TUNEBRIDGE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # Where state lives.
    data_dir: Path = Path("var")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file under data_dir."
    )

    # Serving.
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    scheduler_enabled: bool = True
    poll_interval_s: float = Field(default=10.0, gt=0)
    outbox_interval_s: float = Field(default=2.0, gt=0)
    notification_max_attempts: int = Field(default=20, ge=1)

    # Limits.
    max_upload_bytes: int = Field(
        default=8 * 1024**3, gt=0, description="cap on an upload's decompressed bytes (413)")
    max_gzip_ratio: float = Field(
        default=200.0, gt=1, description="gzip uploads expanding more than this are refused")
    max_line_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    max_reported_errors: int = Field(default=100, ge=1)
    # Processes validating an upload or a job's training file of 64 MB or more. The server's
    # workers are spawned (forking beside its threads is unsafe), so each one that counts tokens
    # loads its own tokenizer (~125 MB): more is faster, at that memory per worker.
    validation_workers: int = Field(default=1, ge=1, le=64)
    # Upload bodies read at once; more wait unread (TCP holds them back). See
    # gateway/routers/datasets.py: fewer at once keep other requests' latency down.
    max_concurrent_uploads: int = Field(default=32, ge=1, le=1024)
    page_size_max: int = Field(default=200, ge=1)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    # A claim still "in progress" after this long belongs to a request that died (a crash or a
    # SIGKILL mid-request): a retry takes it over instead of getting 409 until the TTL ends.
    idempotency_claim_lease_s: int = Field(default=900, ge=10)

    # Approval: a job whose estimate exceeds a cap waits for `approve`.
    max_cost_usd: float | None = Field(default=None, ge=0)
    max_gpu_hours: float | None = Field(default=None, ge=0)
    local_device: str = Field(default="cpu", description="throughput row for local estimates")

    # Training health: stop jobs on NaN, divergence, exploding gradients or lasting overfitting
    # unless a job sets its own `auto_stop` option.
    auto_stop: bool = False

    # Runaway jobs (job options `max_runtime_s`, `max_cost_usd`, `auto_cancel_runaway` override
    # these): flagged once per kind with on-call mentioned; cancelled only when the policy says.
    max_runtime_s: float | None = Field(default=None, gt=0, description="running-time budget")
    runaway_overrun_factor: float | None = Field(
        default=3.0, gt=1, description="flag a job running this many times its estimate")
    runaway_overrun_min_s: float = Field(
        default=600.0, ge=0, description="...and at least this many seconds past it")
    local_gpu_hour_usd: float | None = Field(
        default=None, ge=0, description="price of one device-hour; without it local jobs' "
        "cost is not checked against a cap")
    auto_cancel_runaway: bool = False

    # Backends.
    default_backend: str = "local"
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_webhook_secret: SecretStr | None = Field(
        default=None, description="Enables POST /webhooks/openai; whsec_... as OpenAI shows it.")
    openai_compat_models: dict[str, str] = Field(
        default_factory=dict, description="/v1 model name -> backend; gpt-* go to openai")
    local_executor: Literal["subprocess", "ray"] = Field(
        default="subprocess", description="Where local trainers run: this host, or Ray Jobs.")
    ray_address: str | None = Field(
        default=None, description="Ray job server (dashboard) URL, e.g. http://ray-head:8265.")
    ray_dashboard_token: SecretStr | None = Field(
        default=None, description="Sent as 'Authorization: Bearer' (Ray token auth).")
    ray_job_stop_wait_s: int = Field(
        default=120, ge=1, description="RAY_JOB_STOP_WAIT_TIME_S: a cancelled trainer's time to "
        "save its adapter after SIGTERM, before SIGKILL.")
    ray_gpus_per_job: float = Field(
        default=1.0, ge=0, le=1, description="entrypoint_num_gpus unless a job sets num_gpus.")
    local_torch_threads: int | None = Field(default=None, ge=1)
    local_base_model: str = "smollm2-135m-instruct"
    backend_plugins: list[str] = Field(
        default_factory=list,
        description='Extra backends as "module:factory"; factory(settings) returns a Backend.',
    )

    # Slack.
    slack_bot_token: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_api_url: str | None = None
    slack_default_channel: str | None = None
    slack_oncall_usergroup: str | None = Field(
        default=None, description="User group id (S...) whose members may cancel any job.")
    slack_admin_users: list[str] = Field(
        default_factory=list, description="Slack user ids (U...) that may cancel any job.")
    slack_dataset_url_hosts: list[str] = Field(
        default_factory=list, description="Hosts `/finetune start <url>` may download from.")
    slack_oncall_cache_s: float = Field(default=300.0, ge=0)
    slack_card_update_s: float = Field(
        default=20.0, gt=0, description="Least time between two progress edits of a card.")
    slack_post_interval_s: float = Field(
        default=1.0, ge=0, description="Least time between two posts to one channel.")
    slack_summary_every_s: float = Field(
        default=600.0, gt=0, description="Loss summary reply in a running job's thread.")

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'tunebridge.db').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def admin_key_file(self) -> Path:
        return self.data_dir / "admin.key"

    @property
    def slack_enabled(self) -> bool:
        return self.slack_bot_token is not None
