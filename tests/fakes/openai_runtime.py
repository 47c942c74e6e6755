"""A runtime whose only backend is OpenAI, pointed at a fake OpenAI server, for tests that
drive OpenAI jobs through our API and poller."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from backends.openai import OpenAIBackend
from tests.conftest import run_async
from tests.fakes.openai_server import FakeOpenAI
from tunebridge.runtime import Runtime, build_runtime
from tunebridge.settings import Settings


@contextmanager
def openai_runtime(settings: Settings, fake: FakeOpenAI, key: str) -> Iterator[Runtime]:
    """Status re-read on every poll (max age 0), so tests see provider changes at once."""
    backend = OpenAIBackend(key, fake.base_url, status_max_age_s=0.0)
    runtime = build_runtime(settings, backends=[backend])
    try:
        yield runtime
    finally:
        run_async(backend.aclose())
        runtime.close()
