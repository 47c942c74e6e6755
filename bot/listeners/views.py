"""The start form's submission: field errors shown in the form, the rest after the ack.

Fetching and validating a large file can take longer than Slack's 3 seconds, so the form
closes at once and the outcome (job created, or the dataset's errors) arrives as an ephemeral
message through the slash command's response_url, carried in the view's private_metadata.
"""

from __future__ import annotations

import json
from typing import Any

from slack_bolt import Ack, App
from slack_bolt.context.respond import Respond

from bot.blocks.messages import created_message
from bot.blocks.modal import START_CALLBACK, parse_submission
from bot.context import BotContext, Caller, answering


def register(app: App, ctx: BotContext) -> None:
    def ack_start(ack: Ack, view: dict[str, Any]) -> None:
        parsed = parse_submission(view["state"]["values"])
        if isinstance(parsed, dict):
            ack(response_action="errors", errors=parsed)
        else:
            ack()

    def submit_start(body: dict[str, Any], view: dict[str, Any]) -> None:
        parsed = parse_submission(view["state"]["values"])
        if isinstance(parsed, dict):
            return  # the form showed the errors
        metadata = json.loads(view.get("private_metadata") or "{}")
        respond = Respond(response_url=metadata.get("response_url"))
        caller = Caller(user=str(body["user"]["id"]), channel=metadata.get("channel"),
                        team=(body.get("team") or {}).get("id"))
        with answering(respond):
            created = ctx.start_job(parsed, caller)
            text, blocks = created_message(created.job, created.warnings,
                                           created.job.slack_channel)
            respond(text=text, blocks=blocks, response_type="ephemeral")

    app.view(START_CALLBACK)(ack=ack_start, lazy=[submit_start])
