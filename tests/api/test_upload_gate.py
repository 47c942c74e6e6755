"""TUNEBRIDGE_MAX_CONCURRENT_UPLOADS: bodies beyond the limit wait unread, other requests are
served meanwhile, and every upload is stored once its turn comes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveApi, chat_line, jsonl
from tunebridge.settings import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_concurrent_uploads": 1})


def _staged(live: LiveApi) -> list[Path]:
    return list((live.runtime.settings.data_dir / "blobs" / ".staging").glob("*.part"))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_upload_past_the_limit_waits_unread_while_other_requests_are_served(
        live: LiveApi) -> None:
    release = threading.Event()
    first = jsonl([chat_line(f"first {i}", "a") for i in range(12)])
    second = jsonl([chat_line(f"second {i}", "b") for i in range(12)])
    answers: dict[str, httpx.Response] = {}

    def stalled_body() -> Iterator[bytes]:
        yield first[:100]
        release.wait(30)
        yield first[100:]

    def upload(name: str, body: bytes | Iterator[bytes]) -> None:
        with live.client() as http:
            answers[name] = http.post("/api/datasets", content=body, timeout=60,
                                      headers={"Content-Length": str(len(first))}
                                      if name == "first" else {})

    threads = [threading.Thread(target=upload, args=("first", stalled_body()))]
    threads[0].start()
    deadline = time.monotonic() + 10
    while not _staged(live) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_staged(live)) == 1, "the first upload was not being read"
    threads.append(threading.Thread(target=upload, args=("second", second)))
    threads[1].start()
    time.sleep(1.0)
    assert "second" not in answers, "the second upload was read past the limit"
    with live.client() as http:
        assert http.get("/api/jobs").status_code == 200  # others are served meanwhile
    release.set()
    for thread in threads:
        thread.join(60)
    assert [answers[n].status_code for n in ("first", "second")] == [201, 201]
    assert answers["first"].json()["num_examples"] == answers["second"].json()["num_examples"]
