"""A real `tunebridge serve` whose local executor is the session's Ray head: jobs go in over
HTTP with an admin key, on one uploaded dataset, as a user's would."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tests.e2e.serve_process import ServeProcess
from tests.ray.head import RayHead

HP = {"batch_size": 4, "max_seq_length": 64, "learning_rate": 1e-3}


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what}: not reached in {timeout}s")


class RayGateway:
    def __init__(self, head: RayHead, model: Path, training: Path, root: Path) -> None:
        self.model = model
        self.training = training
        self.serve = ServeProcess(
            root / "var", f"sqlite:///{root / 'tunebridge.db'}",
            TUNEBRIDGE_LOCAL_EXECUTOR="ray", TUNEBRIDGE_RAY_ADDRESS=head.address,
            TUNEBRIDGE_RAY_DASHBOARD_TOKEN=head.token, TUNEBRIDGE_RAY_GPUS_PER_JOB="0",
            TUNEBRIDGE_RAY_JOB_STOP_WAIT_S="60", TUNEBRIDGE_LOCAL_TORCH_THREADS="1",
            TUNEBRIDGE_DEFAULT_BACKEND="local")

    def __enter__(self) -> RayGateway:
        self.serve.start()
        try:
            self.http = httpx.Client(base_url=self.serve.url, timeout=30, headers={
                "Authorization": f"Bearer {self.serve.admin_key()}"})
            self.dataset = self.http.post("/api/datasets",
                                          content=self.training.read_bytes()).json()["id"]
        except BaseException:
            self.serve.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.http.close()
        self.serve.stop()

    def start(self, max_steps: int, options: dict[str, Any]) -> str:
        created = self.http.post("/api/jobs", json={
            "training_dataset_id": self.dataset, "base_model": str(self.model),
            "backend": "local", "hyperparameters": {**HP, "max_steps": max_steps},
            "options": options})
        assert created.status_code == 201, created.text
        return str(created.json()["id"])

    def get(self, job_id: str, what: str = "") -> Any:
        return self.http.get(f"/api/jobs/{job_id}{what}", params={"limit": 500}).json()

    def cancel(self, job_id: str) -> None:
        assert self.http.post(f"/api/jobs/{job_id}/cancel").status_code in (200, 202)
