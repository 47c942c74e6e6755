"""Slack unreachable for ten (simulated) minutes, then rate limiting with a long Retry-After,
then a 5xx after it had already posted, then a plain 503: the outbox keeps every notification,
and each one reaches the channel exactly once, in order. Time moves on a manual clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from bot.clients import notifier_client
from bot.notifier import Pace, SlackNotifier
from storage.repositories.outbox import OutboxRepository
from storage.tables import Notification
from tests.conftest import run_async
from tests.fakes.manual_clock import ManualClock
from tests.fakes.scripted_backend import ScriptedBackend
from tests.fakes.slack_server import BOT_TOKEN, FakeSlack
from tests.slack.support import make_job
from tunebridge import jobs
from tunebridge.lifecycle import notify
from tunebridge.outbox import OutboxSender
from tunebridge.runtime import Runtime, build_runtime
from tunebridge.settings import Settings

NOTES = [f"note-{i}" for i in range(6)]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def runtime(settings: Settings, fake_slack: FakeSlack, scripted: ScriptedBackend,
            clock: ManualClock) -> Iterator[Runtime]:
    slack = settings.model_copy(update={
        "slack_bot_token": SecretStr(BOT_TOKEN), "slack_api_url": fake_slack.api_url})
    rt = build_runtime(slack, backends=[scripted], clock=clock)
    yield rt
    rt.close()


def _rows(runtime: Runtime, job_id: str) -> list[Notification]:
    with runtime.db.session() as session:
        return OutboxRepository(session).for_job(job_id)


def _posted(fake: FakeSlack) -> list[str]:
    return [m["metadata"]["event_payload"]["dedupe_key"]
            for m in fake.world.channel("C1") if "metadata" in m]


def test_slack_down_ten_minutes_then_429_and_5xx_delivers_once_in_order(
        runtime: Runtime, fake_slack: FakeSlack, clock: ManualClock) -> None:
    job = make_job(runtime)
    with runtime.db.session() as session:
        current = jobs.get_job(db=runtime.db, job_id=job.id)
        for name in NOTES:
            notify(session, current, kind="health", dedupe_key=f"{job.id}:{name}", text=name,
                   now=datetime.now(UTC))
    notifier = SlackNotifier(client=notifier_client(runtime.settings, 2.0), db=runtime.db,
                             clock=clock, pace=Pace(0.0, 0.3))
    sender = OutboxSender(db=runtime.db, notifier=notifier, clock=clock)

    fake_slack.down = True
    for _ in range(20):  # ten minutes, a drain every 30 s
        assert run_async(sender.drain()) == 0
        clock.advance(30)
    rows = _rows(runtime, job.id)
    assert {r.state for r in rows} == {"pending"} and _posted(fake_slack) == []
    assert rows[0].attempts >= 3, "the sender gave up trying while Slack was down"

    fake_slack.down = False
    fake_slack.fail("chat.postMessage", 429, retry_after=45)  # too long to wait in place
    fake_slack.fail("chat.postMessage", 500, processed=True)  # posted, then answered 500
    fake_slack.fail("chat.postMessage", 503)
    for _ in range(40):
        clock.advance(60)
        run_async(sender.drain())
        if all(r.state == "sent" for r in _rows(runtime, job.id)):
            break
    rows = _rows(runtime, job.id)
    assert [r.state for r in rows] == ["sent"] * len(rows)
    assert _posted(fake_slack) == [r.dedupe_key for r in rows], "lost, repeated or reordered"
    assert [k.rsplit(":", 1)[-1] for k in _posted(fake_slack)][-len(NOTES):] == NOTES
    assert len(fake_slack.calls_to("chat.postMessage")) == len(rows) + 2  # 429 and 503 refused
