"""The bolt app.

Why the synchronous `App` and not `AsyncApp`: AsyncApp's Web API client needs aiohttp, which
tunebridge does not otherwise depend on, and its Socket Mode needs aiohttp or websockets, while
the sync App runs on slack_sdk's built-in urllib client and built-in Socket Mode client. The
work behind our listeners is synchronous anyway (SQLAlchemy sessions, streaming a file into the
blob store), so async listeners would only push it into threads. The gateway therefore
dispatches each Slack request in a worker thread (`gateway/routers/slack.py`), and the app runs
with `process_before_response=True`: every listener's ack function is pure and runs inline
(answering within milliseconds, well inside Slack's 3 s), and its slow part is a lazy listener
on a bounded thread pool.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App
from slack_sdk import WebClient

from bot.context import BotContext
from bot.listeners import actions, commands, views

LAZY_WORKERS = 8


def build_app(ctx: BotContext, *, client: WebClient, signing_secret: str | None) -> App:
    """`signing_secret` None: Socket Mode only (no HTTP endpoint, nothing to verify)."""
    app = App(
        client=client, signing_secret=signing_secret, process_before_response=True,
        token_verification_enabled=False,  # no auth.test at start-up: Slack may be unreachable
        request_verification_enabled=signing_secret is not None,
        listener_executor=ThreadPoolExecutor(max_workers=LAZY_WORKERS,
                                             thread_name_prefix="slack-lazy"),
    )
    commands.register(app, ctx)
    actions.register(app, ctx)
    views.register(app, ctx)
    return app
