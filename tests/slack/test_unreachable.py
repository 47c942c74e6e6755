"""Slack down at start-up and later: the gateway serves, notifications wait and then arrive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from storage.repositories.outbox import OutboxRepository
from tests.conftest import LiveApi, run_async, run_until
from tests.fakes.slack_server import FakeSlack
from tests.slack.support import make_job
from tunebridge.outbox import OutboxSender
from tunebridge.settings import Settings
from tunebridge.status import JobStatus


class Later:
    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(hours=1)


@pytest.fixture
def settings(settings: Settings, fake_slack: FakeSlack) -> Settings:
    fake_slack.down = True
    return settings.model_copy(update={"slack_app_token": SecretStr("xapp-test")})


def test_an_unreachable_slack_blocks_neither_start_up_nor_loses_notifications(
        live: LiveApi, fake_slack: FakeSlack) -> None:
    runtime = live.runtime
    assert httpx.get(f"{live.url}/healthz", timeout=5).status_code == 200
    job = make_job(runtime, steps=2)
    run_until(runtime, job.id, {JobStatus.SUCCEEDED})
    with runtime.db.session() as session:
        rows = OutboxRepository(session).for_job(job.id)
    assert rows and {r.state for r in rows} == {"pending"} and rows[0].attempts >= 1

    fake_slack.down = False
    sender = OutboxSender(db=runtime.db, notifier=runtime.sender.notifier, clock=Later())
    assert run_async(sender.drain()) == len(rows)
    posted = [m["metadata"]["event_payload"]["dedupe_key"]
              for m in fake_slack.world.channel("C1") if "metadata" in m]
    assert posted == [r.dedupe_key for r in rows]  # once each, in order
    # Socket Mode kept trying in the background all along (this fake has no websocket).
    assert fake_slack.wait_for("apps.connections.open", timeout=15)
