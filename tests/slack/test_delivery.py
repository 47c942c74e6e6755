"""The Slack notifier under Slack's failures: 429s, 5xx after posting, crashes mid-delivery.

Whatever happens, every notification reaches Slack once, in order per channel.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.clients import notifier_client
from bot.notifier import Pace, SlackNotifier
from storage.repositories.outbox import OutboxRepository
from tests.conftest import run_async, run_until
from tests.fakes.slack_server import FakeSlack
from tests.slack.support import make_job
from tunebridge import jobs
from tunebridge.clock import SystemClock
from tunebridge.lifecycle import notify
from tunebridge.outbox import OutboxSender, OutgoingNotification
from tunebridge.runtime import Runtime
from tunebridge.status import JobStatus


class _ProcessDied(BaseException):
    """Stands for SIGKILL: nothing after it runs, not even `except Exception`."""


class DiesAfterSending:
    """The real notifier, in a process that dies after Slack accepted a post and before the
    outbox recorded it as sent."""

    def __init__(self, inner: SlackNotifier) -> None:
        self.inner = inner

    async def send(self, notification: OutgoingNotification) -> dict[str, Any]:
        await self.inner.send(notification)
        raise _ProcessDied

    async def find_delivered(self, dedupe_key: str) -> dict[str, Any] | None:
        return await self.inner.find_delivered(dedupe_key)


class TenMinutesLater:
    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(minutes=10)


def _notifier(runtime: Runtime, inline_wait_s: float = 2.0) -> SlackNotifier:
    return SlackNotifier(client=notifier_client(runtime.settings, inline_wait_s),
                         db=runtime.db, clock=runtime.clock, pace=Pace(0.0, 0.3))


def _drain(runtime: Runtime, notifier: Any, clock: Any = None) -> int:
    sender = OutboxSender(db=runtime.db, notifier=notifier, clock=clock or SystemClock())
    return int(run_async(sender.drain()))


def _queue(runtime: Runtime, job_id: str, *names: str) -> None:
    with runtime.db.session() as session:
        job = jobs.get_job(db=runtime.db, job_id=job_id)
        for name in names:
            notify(session, job, kind="health", dedupe_key=f"{job_id}:{name}", text=name,
                   now=datetime.now(UTC))


def _posted(fake: FakeSlack, channel: str) -> list[str]:
    return [m["metadata"]["event_payload"]["dedupe_key"].split(":")[-1]
            for m in fake.world.channel(channel) if "metadata" in m]


def _states(runtime: Runtime, job_id: str) -> list[str]:
    with runtime.db.session() as session:
        return [row.state for row in OutboxRepository(session).for_job(job_id)]


def test_a_short_429_is_waited_out_in_place_and_everything_arrives_once_in_order(
        runtime: Runtime, fake_slack: FakeSlack) -> None:
    job = make_job(runtime)
    _queue(runtime, job.id, "one", "two", "three")
    fake_slack.fail("chat.postMessage", 429, retry_after=1)
    started = time.monotonic()
    assert _drain(runtime, _notifier(runtime)) == 4
    assert time.monotonic() - started >= 1.0  # Retry-After honoured
    assert len(fake_slack.calls_to("chat.postMessage")) == 5  # the refused one, then four
    assert _posted(fake_slack, "C1")[1:] == ["one", "two", "three"]
    assert len(_posted(fake_slack, "C1")) == 4


def test_a_long_429_parks_the_channel_while_others_flow_then_delivers_in_order(
        runtime: Runtime, fake_slack: FakeSlack) -> None:
    first, second = make_job(runtime, channel="C1"), make_job(runtime, channel="C2")
    _queue(runtime, first.id, "a", "b")
    _queue(runtime, second.id, "x")
    notifier = _notifier(runtime, inline_wait_s=0)
    fake_slack.fail("chat.postMessage", 429, retry_after=1)  # the first card, in C1
    assert _drain(runtime, notifier) == 2  # C2's card and reply
    assert _posted(fake_slack, "C1") == [] and len(_posted(fake_slack, "C2")) == 2
    assert _drain(runtime, notifier) == 0  # C1 waits its Retry-After
    time.sleep(1.1)
    assert _drain(runtime, notifier) == 3
    assert _posted(fake_slack, "C1")[1:] == ["a", "b"]
    assert set(_states(runtime, first.id)) == {"sent"}


@pytest.mark.parametrize("crash_on", ["card", "reply"])
def test_a_crash_between_post_and_confirm_never_posts_twice(
        runtime: Runtime, fake_slack: FakeSlack, crash_on: str) -> None:
    job = make_job(runtime)
    _queue(runtime, job.id, "warning")
    if crash_on == "reply":
        sender = OutboxSender(db=runtime.db, notifier=_notifier(runtime), clock=SystemClock())
        sender.batch = 1  # deliver only the card
        run_async(sender.drain())
    with pytest.raises(_ProcessDied):
        _drain(runtime, DiesAfterSending(_notifier(runtime)))
    assert "sending" in _states(runtime, job.id)

    assert _drain(runtime, _notifier(runtime)) >= 1  # a restarted process, fresh memory
    assert _posted(fake_slack, "C1")[1:] == ["warning"]  # card and warning, once each
    assert set(_states(runtime, job.id)) == {"sent"}
    card = fake_slack.world.channel("C1")[0]
    assert jobs.get_job(db=runtime.db, job_id=job.id).slack_thread_ts == card["ts"]
    searched = "conversations.history" if crash_on == "card" else "conversations.replies"
    assert fake_slack.calls_to(searched)[0].args["include_all_metadata"] in ("1", "true", True)


def test_a_5xx_after_slack_posted_is_found_instead_of_posted_again(
        runtime: Runtime, fake_slack: FakeSlack) -> None:
    job = make_job(runtime)
    _queue(runtime, job.id, "warning")
    fake_slack.fail("chat.postMessage", 500, processed=True)
    assert _drain(runtime, _notifier(runtime)) == 0  # Slack stored the card, answered 500
    assert _drain(runtime, _notifier(runtime), TenMinutesLater()) == 2
    assert _posted(fake_slack, "C1")[1:] == ["warning"]
    assert len(fake_slack.world.channel("C1")) == 2


def test_a_chart_upload_that_failed_is_finished_later_without_a_second_reply(
        runtime: Runtime, fake_slack: FakeSlack) -> None:
    job = make_job(runtime, steps=4)
    runtime.use_notifier(_notifier(runtime))
    fake_slack.fail("files.completeUploadExternal", 500)
    run_until(runtime, job.id, {JobStatus.SUCCEEDED})
    run_async(runtime.sender.drain())
    assert "pending" in _states(runtime, job.id)
    assert _drain(runtime, _notifier(runtime), TenMinutesLater()) == 1
    card = fake_slack.world.channel("C1")[0]
    done = [m for m in fake_slack.world.thread("C1", card["ts"])
            if "Train loss: final" in m["text"]]  # the completion summary carries the chart
    assert len(done) == 1 and done[0]["metadata"]["event_payload"]["chart"] == "done"
    assert len(fake_slack.world.uploaded_pngs()) >= 1
    assert len(fake_slack.calls_to("files.completeUploadExternal")) == 2  # failed, then done
