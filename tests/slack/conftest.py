"""Slack-enabled fixtures: the root `settings` with Slack pointed at a fake Web API on
127.0.0.1, so the root `runtime` and `live` fixtures build the gateway with the bot attached."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.conftest import LiveApi
from tests.fakes.scripted_backend import ScriptedBackend
from tests.fakes.slack_server import BOT_TOKEN, FakeSlack
from tests.slack.support import SIGNING_SECRET, SignedSlack
from tunebridge.settings import Settings

ONCALL_GROUP = "S0ONCALL"
ADMIN = "UADMIN"


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.world.usergroups[ONCALL_GROUP] = ["U3"]
        yield fake


@pytest.fixture
def settings(settings: Settings, fake_slack: FakeSlack) -> Settings:
    return settings.model_copy(update={
        "slack_bot_token": SecretStr(BOT_TOKEN),
        "slack_signing_secret": SecretStr(SIGNING_SECRET),
        "slack_api_url": fake_slack.api_url,
        "slack_default_channel": "C0DEFAULT",
        "slack_oncall_usergroup": ONCALL_GROUP,
        "slack_admin_users": [ADMIN],
        "slack_dataset_url_hosts": ["127.0.0.1"],
        "slack_post_interval_s": 0.0,
        "slack_card_update_s": 0.3,
        "slack_summary_every_s": 0.6,
        "default_backend": "scripted",
    })


@pytest.fixture
def scripted(tmp_path: Path) -> ScriptedBackend:
    """Jobs of about a second, so a card is updated while they run."""
    return ScriptedBackend(tmp_path / "provider", step_seconds=0.1, steps=10)


@pytest.fixture
def slack(live: LiveApi, fake_slack: FakeSlack) -> SignedSlack:
    return SignedSlack(live.url, fake_slack.response_url())
