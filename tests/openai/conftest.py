"""Fixtures for the OpenAI backend tests: a real fake server and backends built against it.

Every test goes through the official SDK over loopback HTTP; nothing of ours is mocked.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `tests.fakes` is not an installed package
    sys.path.insert(0, str(ROOT))

from openai_support import API_KEY, BackendFactory, write_jsonl  # noqa: E402

from backends.openai import OpenAIBackend  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI  # noqa: E402


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(API_KEY) as server:
        yield server


@pytest.fixture
async def make_backend(fake: FakeOpenAI) -> AsyncIterator[BackendFactory]:
    """Build backends (several per test, to model restarts); all are closed afterwards."""
    built: list[OpenAIBackend] = []

    def build(**overrides: Any) -> OpenAIBackend:
        options: dict[str, Any] = {
            "api_key": API_KEY,
            "base_url": fake.base_url,
            "max_concurrency": 8,
            "timeout_s": 5.0,
            "single_upload_limit": 4096,
            "upload_part_size": 1000,
            "events_page_size": 5,
        }
        options.update(overrides)
        backend = OpenAIBackend(**options)
        built.append(backend)
        return backend

    yield build
    for backend in built:
        await backend.aclose()


@pytest.fixture
def train_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", 5)
