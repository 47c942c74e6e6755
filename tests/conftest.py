"""Shared fixtures: a database per test (SQLite file or a PostgreSQL schema), a runtime built
by the real composition root, and the real app served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn

from tests.fakes.scripted_backend import ScriptedBackend
from tunebridge import api_keys
from tunebridge.runtime import Runtime, build_runtime
from tunebridge.settings import Settings

POSTGRES_ADMIN = os.environ.get("TUNEBRIDGE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_available() -> bool:
    try:
        with psycopg.connect(POSTGRES_ADMIN, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


_PG = postgres_available()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tunebridge.db'}"
        return
    if not _PG:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL at 127.0.0.1:5432 is required in CI")
        pytest.skip("PostgreSQL is not running at 127.0.0.1:5432")
    schema = f"tb_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{POSTGRES_ADMIN.replace('postgresql://', 'postgresql+psycopg://')}?options=-csearch_path%3D{schema}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "var", database_url=database_url,  # type: ignore[call-arg]
                    scheduler_enabled=False, poll_interval_s=0.2, outbox_interval_s=0.1)


@pytest.fixture
def scripted(tmp_path: Path) -> ScriptedBackend:
    return ScriptedBackend(tmp_path / "provider", step_seconds=0.02, steps=10)


@pytest.fixture
def runtime(settings: Settings, scripted: ScriptedBackend) -> Iterator[Runtime]:
    rt = build_runtime(settings, backends=[scripted])
    yield rt
    rt.close()


_LOOP = asyncio.new_event_loop()


def run_async(coroutine: Any) -> Any:
    """One long-lived loop for the test session, as `serve` has one: backends whose clients
    bind to a loop (the OpenAI SDK's) keep working across ticks."""
    return _LOOP.run_until_complete(coroutine)


def tick(runtime: Runtime) -> None:
    """One scheduler round, as `serve` runs it: poll, then drain the outbox."""
    run_async(runtime.poller.tick())
    run_async(runtime.sender.drain())


def run_until(runtime: Runtime, job_id: str, statuses: set[str], timeout: float = 10) -> str:
    """Tick the scheduler until the job reaches one of `statuses`; return the status."""
    from tunebridge.jobs import get_job

    deadline = time.monotonic() + timeout
    while True:
        tick(runtime)
        status = get_job(db=runtime.db, job_id=job_id).status
        if status in statuses:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{job_id} stayed {status}, wanted {statuses}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveApi:
    url: str
    runtime: Runtime
    admin_key: str

    def client(self, key: str | None = None) -> httpx.Client:
        token = self.admin_key if key is None else key
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def key(self, *scopes: str) -> str:
        return api_keys.create_key(db=self.runtime.db, clock=self.runtime.clock, name="test",
                                   scopes=list(scopes)).plaintext


@pytest.fixture
def live(runtime: Runtime) -> Iterator[LiveApi]:
    """The real app on a real socket: requests go through uvicorn, not an in-process shim."""
    from gateway.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(runtime=runtime), host="127.0.0.1",
                                           port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    admin = api_keys.create_key(db=runtime.db, clock=runtime.clock, name="admin",
                                scopes=["admin"]).plaintext
    yield LiveApi(url=f"http://127.0.0.1:{port}", runtime=runtime, admin_key=admin)
    server.should_exit = True
    thread.join(timeout=10)


def chat_line(question: str, answer: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question},
                         {"role": "assistant", "content": answer}]}


def jsonl(records: list[dict[str, Any]]) -> bytes:
    import orjson

    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def stored_dataset(runtime: Runtime, *, creator: str = "t") -> Any:
    """Twelve chats stored through the dataset service, as an upload would store them."""
    from tunebridge import datasets

    staged = runtime.blobs.stage([jsonl([chat_line(f"q{i}", f"a{i}") for i in range(12)])],
                                 max_bytes=1 << 20)
    return datasets.store_dataset(db=runtime.db, blobs=runtime.blobs, clock=runtime.clock,
                                  staged=staged, filename="train.jsonl", creator=creator,
                                  limits=datasets.ValidationLimits()).dataset


@pytest.fixture
def chat_jsonl() -> bytes:
    return jsonl([chat_line(f"What is {i} + {i}?", str(2 * i)) for i in range(12)])


def token_counting_model(tmp_path: Path) -> Path:
    """Just enough of a local model for token counting (config.json and tokenizer.json), so a
    job gets a GPU-time estimate without a real model."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    directory = tmp_path / "tiny-model"
    directory.mkdir()
    (directory / "config.json").write_text('{"model_type": "llama"}')
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(directory / "tokenizer.json"))
    return directory
