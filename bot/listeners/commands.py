"""`/finetune`: the ack answers help at once; everything else runs lazily after the ack."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App
from slack_bolt.context.respond import Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.blocks.card import card
from bot.blocks.messages import created_message, help_message, job_list
from bot.blocks.modal import start_modal
from bot.blocks.text import escape
from bot.commands import (
    Approve,
    Cancel,
    Help,
    ListJobs,
    Start,
    Status,
    Subscribe,
    Unsubscribe,
    parse,
)
from bot.context import BotContext, Caller, answering
from tunebridge import jobs, progress, subscriptions
from tunebridge.errors import TunebridgeError
from tunebridge.status import JobStatus

COMMAND = "/finetune"
ACTIVE = [s.value for s in JobStatus if s.is_active]
Handler = Callable[[BotContext, Any, Caller, dict[str, Any], WebClient, Respond], None]


def register(app: App, ctx: BotContext) -> None:
    def ack_finetune(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        """Help is the ack itself; the form opens before the ack (its trigger_id lives 3 s,
        so it must not queue behind slow lazy work); everything else runs after it."""
        command = parse(str(body.get("text") or ""))
        if isinstance(command, Help):
            text, blocks = help_message(command.error)
            ack(text=text, blocks=blocks)
        elif isinstance(command, Start) and command.source is None:
            try:
                _open_form(ctx, command, body, client)
            except SlackApiError as exc:
                ack(text=f"Could not open the form ({exc.response.get('error')}).")
                return
            ack()
        else:
            ack()

    def run_finetune(body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        command = parse(str(body.get("text") or ""))
        handler = HANDLERS.get(type(command))
        if handler is None or _opens_form(command):
            return  # answered by the ack
        caller = Caller(user=str(body.get("user_id")), channel=body.get("channel_id"),
                        team=body.get("team_id"))
        with answering(respond):
            handler(ctx, command, caller, body, client, respond)

    app.command(COMMAND)(ack=ack_finetune, lazy=[run_finetune])


def _opens_form(command: object) -> bool:
    return isinstance(command, Start) and command.source is None


def _open_form(ctx: BotContext, command: Start, body: dict[str, Any], client: WebClient) -> None:
    backend = command.backend or ctx.default_backend()
    metadata = json.dumps({"channel": body.get("channel_id"),
                           "response_url": body.get("response_url")})
    client.views_open(trigger_id=body["trigger_id"], view=start_modal(
        backends=ctx.backends(), backend=backend, method=command.method or "sft",
        base_model=command.base_model or ctx.default_model(backend), metadata=metadata))


def _start(ctx: BotContext, command: Start, caller: Caller, body: dict[str, Any],
           client: WebClient, respond: Respond) -> None:
    created = ctx.start_job(command, caller)
    text, blocks = created_message(created.job, created.warnings, created.job.slack_channel)
    respond(text=text, blocks=blocks, response_type="ephemeral")


def _status(ctx: BotContext, command: Status, caller: Caller, body: dict[str, Any],
            client: WebClient, respond: Respond) -> None:
    db = ctx.runtime.db
    job_id = command.job_id
    if job_id is None:
        latest, _ = jobs.list_jobs(db=db, limit=1, creator=caller.creator)
        if not latest:
            raise TunebridgeError("no_jobs", "You have no jobs yet: `/finetune start` makes one.")
        job_id = latest[0].id
    text, blocks = card(progress.snapshot(db=db, job_id=job_id, now=ctx.runtime.clock.now()))
    respond(text=text, blocks=blocks, response_type="ephemeral")


def _list(ctx: BotContext, command: ListJobs, caller: Caller, body: dict[str, Any],
          client: WebClient, respond: Respond) -> None:
    rows, _ = jobs.list_jobs(
        db=ctx.runtime.db, limit=20,
        creator=caller.creator if command.scope == "mine" else None,
        statuses=ACTIVE if command.scope == "running" else ())
    text, blocks = job_list(rows, command.scope)
    respond(text=text, blocks=blocks, response_type="ephemeral")


def _cancel(ctx: BotContext, command: Cancel, caller: Caller, body: dict[str, Any],
            client: WebClient, respond: Respond) -> None:
    job = ctx.cancel(command.job_id, caller)
    respond(text=f"Cancel of {job.id} requested: it is {job.status}.", response_type="ephemeral")


def _approve(ctx: BotContext, command: Approve, caller: Caller, body: dict[str, Any],
             client: WebClient, respond: Respond) -> None:
    job = ctx.approve(command.job_id, caller)
    respond(text=f"<@{caller.user}> approved {job.id}: it is {job.status}.",
            response_type="in_channel")


def _subscribe(ctx: BotContext, command: Subscribe, caller: Caller, body: dict[str, Any],
               client: WebClient, respond: Respond) -> None:
    runtime = ctx.runtime
    subscriptions.subscribe(db=runtime.db, registry=runtime.registry, clock=runtime.clock,
                            channel=str(caller.channel), backend=command.backend,
                            actor=caller.creator)
    what = f"{escape(command.backend)} jobs" if command.backend else "all jobs"
    respond(text=f"<@{caller.user}> subscribed this channel to {what}: each gets a thread here.",
            response_type="in_channel")


def _unsubscribe(ctx: BotContext, command: Unsubscribe, caller: Caller, body: dict[str, Any],
                 client: WebClient, respond: Respond) -> None:
    removed = subscriptions.unsubscribe(db=ctx.runtime.db, channel=str(caller.channel),
                                        backend=command.backend)
    what = f"{escape(command.backend)} jobs" if command.backend else "jobs"
    text = (f"<@{caller.user}> unsubscribed this channel from {what}." if removed
            else f"This channel was not subscribed to {what}.")
    respond(text=text, response_type="in_channel" if removed else "ephemeral")


HANDLERS: dict[type, Handler] = {
    Start: _start, Status: _status, ListJobs: _list, Cancel: _cancel, Approve: _approve,
    Subscribe: _subscribe, Unsubscribe: _unsubscribe,
}
