"""`tunebridge serve` as a real subprocess wired to the fake OpenAI and fake Slack servers, plus
read-only access to its database, for the crash, fault and secrets tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import col, func, select

from storage.database import Database
from storage.tables import (
    ApiKey,
    AuditLog,
    Dataset,
    IdempotencyRecord,
    Job,
    JobEvent,
    MetricPoint,
    Notification,
)
from tests.e2e.serve_process import ServeProcess
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack

OPENAI_MODEL = "gpt-4o-mini-2024-07-18"
START_TIMEOUT_S = 120  # a loaded CI machine imports the whole stack slowly
TABLES = (Dataset, Job, JobEvent, MetricPoint, Notification, ApiKey, AuditLog, IdempotencyRecord)


def stack_env(openai: FakeOpenAI, slack: FakeSlack, signing_secret: str) -> dict[str, str]:
    return {
        "TUNEBRIDGE_OPENAI_API_KEY": openai.api_key,
        "TUNEBRIDGE_OPENAI_BASE_URL": openai.base_url,
        "TUNEBRIDGE_SLACK_BOT_TOKEN": slack.world.bot_token,
        "TUNEBRIDGE_SLACK_SIGNING_SECRET": signing_secret,
        "TUNEBRIDGE_SLACK_API_URL": slack.api_url,
        "TUNEBRIDGE_SLACK_POST_INTERVAL_S": "0",
        "TUNEBRIDGE_SLACK_CARD_UPDATE_S": "0.5",
        "TUNEBRIDGE_LOG_LEVEL": "info",
    }


def wait_for(check: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        time.sleep(0.1)


class Store:
    """The serve process's database, read from the test (never written)."""

    def __init__(self, database_url: str) -> None:
        self.db = Database(database_url)

    def counts(self) -> dict[str, int]:
        with self.db.session() as session:
            return {t.__tablename__: session.exec(select(func.count()).select_from(t)).one()  # type: ignore[attr-defined]
                    for t in TABLES}

    def datasets(self) -> list[Dataset]:
        with self.db.session() as session:
            return list(session.exec(select(Dataset)))

    def outbox(self) -> list[Notification]:
        with self.db.session() as session:
            return list(session.exec(select(Notification).order_by(col(Notification.id))))

    def events(self, job_id: str) -> list[JobEvent]:
        with self.db.session() as session:
            return list(session.exec(select(JobEvent).where(JobEvent.job_id == job_id)
                                     .order_by(col(JobEvent.id))))

    def close(self) -> None:
        self.db.dispose()


class Stack:
    """serve + fakes; `http` talks to serve with the admin key it wrote on first start."""

    def __init__(self, serve: ServeProcess, openai: FakeOpenAI, slack: FakeSlack,
                 store: Store) -> None:
        self.serve = serve
        self.openai = openai
        self.slack = slack
        self.store = store
        self._http: httpx.Client | None = None

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(base_url=self.serve.url, timeout=30, headers={
                "Authorization": f"Bearer {self.serve.admin_key()}"})
        return self._http

    def start(self) -> None:
        self.serve.start(timeout=START_TIMEOUT_S)

    def restart_after_kill(self) -> None:
        self.serve.kill()
        self.start()

    def upload(self, data: bytes) -> str:
        response = self.http.post("/api/datasets", content=data)
        assert response.status_code in (200, 201), response.text
        return str(response.json()["id"])

    def create_openai_job(self, dataset_id: str, channel: str | None = None) -> str:
        body: dict[str, Any] = {"training_dataset_id": dataset_id, "base_model": OPENAI_MODEL,
                                "backend": "openai", "hyperparameters": {"n_epochs": 2}}
        if channel:
            body["notify"] = {"slack_channel": channel}
        response = self.http.post("/api/jobs", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.http.get(f"/api/jobs/{job_id}").json())

    def provider_creates(self) -> int:
        return len(self.openai.requests_to("POST", "/v1/fine_tuning/jobs"))

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        self.serve.stop()
        self.store.close()


def make_stack(tmp_path: Path, database_url: str, openai: FakeOpenAI, slack: FakeSlack,
               signing_secret: str = "reliability-signing-secret", **env: str) -> Stack:
    serve = ServeProcess(tmp_path / "var", database_url,
                         **{**stack_env(openai, slack, signing_secret), **env})
    return Stack(serve, openai, slack, Store(database_url))
