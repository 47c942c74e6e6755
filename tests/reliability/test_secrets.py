"""Secrets never reach logs. A full run of `tunebridge serve` at debug level, with every secret
set to a distinctive random value: uploads, an OpenAI job through the fake provider (including a
5xx and a rejected key), Slack posts, a signed slash command and refused requests. Then every
byte serve wrote (stdout, stderr, files under its data dir except the admin key file, the SQLite
database) is searched for each secret: zero hits."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import chat_line, jsonl
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack
from tests.reliability.stack import Stack, make_stack, wait_for
from tests.slack.support import SignedSlack

pytestmark = pytest.mark.slow

OPENAI_KEY = f"sk-proj-{secrets.token_urlsafe(24)}"
BOT_TOKEN = f"xoxb-{secrets.token_hex(12)}"
SIGNING_SECRET = secrets.token_hex(16)
DB_PASSWORD = f"pw{secrets.token_hex(10)}"


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(OPENAI_KEY, steps_per_epoch=3, default_epochs=2) as fake:
        yield fake


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack(bot_token=BOT_TOKEN) as fake:
        yield fake


@pytest.fixture
def stack(tmp_path: Path, database_url: str, fake_openai: FakeOpenAI,
          fake_slack: FakeSlack) -> Iterator[Stack]:
    if database_url.startswith("sqlite"):
        pytest.skip("the run is the same on both databases; PostgreSQL adds its password")
    if database_url.startswith("postgresql"):  # trust auth ignores it; logs must not show it
        database_url = database_url.replace("postgres@", f"postgres:{DB_PASSWORD}@", 1)
    built = make_stack(tmp_path, database_url, fake_openai, fake_slack, SIGNING_SECRET,
                       TUNEBRIDGE_LOG_LEVEL="debug")
    yield built
    built.close()


def test_a_full_run_logs_no_secret(stack: Stack, tmp_path: Path) -> None:
    stack.start()
    admin_key = stack.serve.admin_key()
    user_key = stack.http.post("/api/keys", json={"name": "x", "scopes": ["read"]})  # may 404
    dataset = stack.upload(jsonl([chat_line(f"q{i}", f"a{i}") for i in range(12)]))
    stack.openai.fail_next(1, 500)
    job_id = stack.create_openai_job(dataset, channel="C1")
    external = wait_for(lambda: stack.job(job_id)["external_id"], what="submitted")
    stack.openai.run_to_end(external)
    wait_for(lambda: stack.job(job_id)["status"] == "succeeded", what="succeeded")
    wait_for(lambda: all(r.state == "sent" for r in stack.store.outbox()), what="sent")
    slack = SignedSlack(stack.serve.url, stack.slack.response_url(), SIGNING_SECRET)
    assert slack.command(f"status {job_id}").status_code == 200
    assert slack.post(slack.command_body("help"), {"X-Slack-Signature": "v0=bad"}).status_code \
        == 401
    anonymous = httpx.Client(base_url=stack.serve.url, timeout=10)
    assert anonymous.get("/api/jobs", headers={"Authorization": f"Bearer {admin_key}x"}
                         ).status_code == 401
    stack.openai.api_key = "sk-rotated"  # serve's key is now refused: a configuration alert
    second = stack.create_openai_job(dataset)
    wait_for(lambda: any(e.kind != "status" for e in stack.store.events(second))
             or b"401" in b"".join(p.read_bytes() for p in stack.serve.outputs),
             timeout=30, what="the provider refused the key")
    time.sleep(1.0)
    stack.serve.stop()

    secrets_used = {"OpenAI key": OPENAI_KEY, "Slack bot token": BOT_TOKEN,
                    "Slack signing secret": SIGNING_SECRET, "admin API key": admin_key,
                    "database password": DB_PASSWORD}
    if user_key.status_code == 201:
        secrets_used["issued API key"] = user_key.json()["key"]
    written = {p: p.read_bytes() for p in stack.serve.outputs}
    for path in stack.serve.data_dir.rglob("*"):
        if path.is_file() and path.name != "admin.key":
            written[path] = path.read_bytes()
    assert sum(len(b) for b in written.values()) > 10_000, "serve wrote suspiciously little"
    # The search finds a secret where one is meant to be (the admin key file, mode 0600).
    assert admin_key.encode() in (stack.serve.data_dir / "admin.key").read_bytes()
    hits = [(name, str(path)) for name, value in secrets_used.items()
            for path, data in written.items() if value.encode() in data]
    assert hits == [], hits
