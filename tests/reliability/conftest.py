"""Fakes for the reliability tests: one fake OpenAI and one fake Slack per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack
from tests.reliability.stack import Stack, make_stack


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI("sk-reliability-fake", steps_per_epoch=3, default_epochs=2) as fake:
        yield fake


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def stack(tmp_path: Path, database_url: str, fake_openai: FakeOpenAI,
          fake_slack: FakeSlack) -> Iterator[Stack]:
    built = make_stack(tmp_path, database_url, fake_openai, fake_slack)
    yield built
    built.close()
