"""`/finetune start <url>` fetches datasets only from the allow-listed hosts: loopback, link-local
(cloud metadata), private ranges and URL-parsing tricks are refused before any request is made,
and an allowed host cannot redirect the fetch elsewhere. The targets here are real listeners on
127.0.0.1 that record what reaches them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

from bot.intake import DatasetIntake
from tests.conftest import chat_line, jsonl
from tests.fakes.slack_server import BOT_TOKEN, FakeSlack
from tunebridge.errors import InvalidInput
from tunebridge.runtime import Runtime


class Target:
    """Records every request; answers JSONL, or a redirect to `redirect_to`."""

    def __init__(self, redirect_to: str | None = None) -> None:
        self.paths: list[str] = []
        self.auth: list[str | None] = []
        self.redirect_to = redirect_to
        target = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                target.paths.append(self.path)
                target.auth.append(self.headers.get("Authorization"))
                if target.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", target.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = jsonl([chat_line("q", "a")])
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """SQLite only: the property is about outbound requests, not the database."""
    yield f"sqlite:///{tmp_path / 'tunebridge.db'}"


@pytest.fixture
def internal() -> Iterator[Target]:
    target = Target()
    yield target
    target.close()


def _intake(runtime: Runtime, slack: FakeSlack, hosts: list[str]) -> DatasetIntake:
    return DatasetIntake(runtime=runtime, client=WebClient(token=BOT_TOKEN, base_url=slack.api_url),
                         bot_token=BOT_TOKEN, allowed_hosts=hosts)


def test_internal_addresses_are_refused_without_a_request(
        runtime: Runtime, fake_slack: FakeSlack, internal: Target) -> None:
    intake = _intake(runtime, fake_slack, ["datasets.example.com"])
    port = internal.port
    urls = [
        f"http://127.0.0.1:{port}/train.jsonl", f"http://localhost:{port}/train.jsonl",
        f"http://[::1]:{port}/train.jsonl", f"http://2130706433:{port}/train.jsonl",
        f"http://0x7f.1:{port}/train.jsonl", f"http://127.1:{port}/train.jsonl",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/", "http://10.0.0.5/train.jsonl",
        "http://192.168.1.1/train.jsonl", "http://172.16.0.1/train.jsonl",
        f"http://datasets.example.com@127.0.0.1:{port}/train.jsonl",
        f"http://127.0.0.1:{port}#@datasets.example.com/train.jsonl",
        f"http://127.0.0.1:{port}?@datasets.example.com/train.jsonl",
        f"http://datasets.example.com.127.0.0.1.nip.io:{port}/train.jsonl",
        f"https://datasets.example.com\\@127.0.0.1:{port}/train.jsonl",
    ]
    for url in urls:
        with pytest.raises(InvalidInput) as refused:
            intake.resolve(url, creator="slack:U1")
        assert refused.value.code == "dataset_host_not_allowed", (url, refused.value.code)
    assert internal.paths == [], "a refused URL was fetched"


def test_an_allowed_host_cannot_redirect_the_fetch_inward(
        runtime: Runtime, fake_slack: FakeSlack, internal: Target) -> None:
    bouncer = Target(redirect_to=f"http://127.0.0.1:{internal.port}/secret")
    try:
        intake = _intake(runtime, fake_slack, ["localhost"])
        with pytest.raises(InvalidInput) as refused:
            intake.resolve(f"http://localhost:{bouncer.port}/train.jsonl", creator="slack:U1")
        assert refused.value.code == "download_failed"
        assert bouncer.paths == ["/train.jsonl"] and internal.paths == []
        # The bot token never leaves for a non-Slack host.
        bouncer.redirect_to = None
        dataset = intake.resolve(f"http://localhost:{bouncer.port}/ok.jsonl", creator="slack:U1")
        assert dataset.num_examples == 1
        assert bouncer.auth == [None, None]
    finally:
        bouncer.close()
