"""Plugs Slack into the gateway: `gateway.app.create_app` calls `attach` when a bot token is set.

It mounts `POST /slack/events` (HTTP mode, when a signing secret is set), swaps the outbox's
notifier for Slack's, and returns what the app's lifespan starts and stops: the Socket Mode
connection (when an app token is set) and the progress ticker that queues card refreshes and
loss summaries for running jobs. Nothing here waits for Slack: if it is unreachable, start-up
completes and notifications wait in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import FastAPI
from slack_bolt import App

from bot.app import build_app
from bot.clients import listener_client, notifier_client
from bot.context import BotContext
from bot.intake import DatasetIntake
from bot.notifier import Pace, SlackNotifier
from bot.oncall import OncallDirectory
from bot.socket_mode import SocketModeRunner
from gateway.routers.slack import SignatureGuard, slack_router
from tunebridge import progress
from tunebridge.runtime import Runtime

log = logging.getLogger(__name__)


class SlackAttachment:
    def __init__(self, *, runtime: Runtime, app: App, socket: SocketModeRunner | None) -> None:
        self.runtime = runtime
        self.app = app
        self.socket = socket
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.socket is not None:
            self.socket.start()  # connects in the background, retrying
        self._ticker = asyncio.create_task(self._tick_forever(), name="slack-progress")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self.socket is not None:
            await asyncio.to_thread(self.socket.stop)

    async def _tick_forever(self) -> None:
        settings = self.runtime.settings
        while True:
            await asyncio.sleep(settings.slack_card_update_s)
            try:
                added = await asyncio.to_thread(
                    progress.queue_progress, db=self.runtime.db, clock=self.runtime.clock,
                    card_every_s=settings.slack_card_update_s,
                    summary_every_s=settings.slack_summary_every_s)
            except Exception:
                log.exception("queuing progress notifications failed")
                continue
            if added and self.runtime.scheduler is not None:
                self.runtime.scheduler.wake_outbox()


def attach(app: FastAPI, runtime: Runtime) -> SlackAttachment:
    settings = runtime.settings
    assert settings.slack_bot_token is not None, "attach is only called with a bot token"
    client = listener_client(settings)
    ctx = BotContext(
        runtime=runtime,
        intake=DatasetIntake(runtime=runtime, client=client,
                             bot_token=settings.slack_bot_token.get_secret_value(),
                             allowed_hosts=settings.slack_dataset_url_hosts),
        oncall=OncallDirectory(client=client, usergroup=settings.slack_oncall_usergroup,
                               admins=settings.slack_admin_users,
                               ttl_s=settings.slack_oncall_cache_s))
    secret = settings.slack_signing_secret
    bolt = build_app(ctx, client=client,
                     signing_secret=secret.get_secret_value() if secret else None)
    if secret is not None:
        app.include_router(slack_router(bolt.dispatch, SignatureGuard(secret.get_secret_value())))
    runtime.use_notifier(SlackNotifier(
        client=notifier_client(settings), db=runtime.db, clock=runtime.clock,
        pace=Pace(post_interval_s=settings.slack_post_interval_s,
                  card_update_s=settings.slack_card_update_s),
        oncall_group=settings.slack_oncall_usergroup))
    app_token = settings.slack_app_token
    socket = SocketModeRunner(bolt, app_token.get_secret_value()) if app_token else None
    return SlackAttachment(runtime=runtime, app=bolt, socket=socket)
