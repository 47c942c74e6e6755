"""Card buttons (Approve, Cancel, Details) and the backend/method pickers in the start form."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_bolt.context.respond import Respond
from slack_sdk import WebClient

from bot.blocks.card import APPROVE_ACTION, CANCEL_ACTION, DETAILS_ACTION
from bot.blocks.modal import BACKEND_ACTION, METHOD_ACTION, choices, details_modal, start_modal
from bot.blocks.text import user_ref
from bot.context import BotContext, Caller, answering
from tunebridge import jobs


def _caller(body: dict[str, Any]) -> Caller:
    return Caller(user=str(body["user"]["id"]), channel=(body.get("channel") or {}).get("id"),
                  team=(body.get("team") or {}).get("id"))


def _value(body: dict[str, Any]) -> str:
    return str(body["actions"][0].get("value") or "")


def register(app: App, ctx: BotContext) -> None:
    def ack_action(ack: Ack) -> None:
        ack()

    def cancel_clicked(body: dict[str, Any], respond: Respond) -> None:
        caller = _caller(body)
        with answering(respond):
            job = ctx.cancel(_value(body), caller)
            respond(text=f"{user_ref(caller.creator)} asked to cancel {job.id}: it is "
                    f"{job.status}.", response_type="ephemeral", replace_original=False)

    def approve_clicked(body: dict[str, Any], respond: Respond) -> None:
        caller = _caller(body)
        with answering(respond):
            job = ctx.approve(_value(body), caller)
            respond(text=f"{user_ref(caller.creator)} approved {job.id}: it is {job.status}.",
                    response_type="in_channel", replace_original=False)

    def open_details(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond
                     ) -> None:
        """Runs inline, not lazily: views.open needs the click's trigger_id within 3 s."""
        ack()
        runtime = ctx.runtime
        with answering(respond):
            job = jobs.get_job(db=runtime.db, job_id=_value(body))
            events = jobs.job_events(db=runtime.db, job_id=job.id, after_id=None, limit=500)
            client.views_open(trigger_id=body["trigger_id"], view=details_modal(job, events))

    def form_choice_changed(body: dict[str, Any], client: WebClient) -> None:
        """Backend or method changed: re-render the form with that combination's knobs."""
        view = body["view"]
        backend, method, model = choices(view["state"]["values"])
        backend = backend or ctx.default_backend()
        if body["actions"][0].get("action_id") == BACKEND_ACTION or not model:
            model = ctx.default_model(backend)
        client.views_update(view_id=view["id"], hash=view.get("hash"), view=start_modal(
            backends=ctx.backends(), backend=backend, method=method or "sft",
            base_model=model, metadata=view.get("private_metadata") or "{}"))

    app.action(CANCEL_ACTION)(ack=ack_action, lazy=[cancel_clicked])
    app.action(APPROVE_ACTION)(ack=ack_action, lazy=[approve_clicked])
    app.action(DETAILS_ACTION)(open_details)
    app.action(BACKEND_ACTION)(ack=ack_action, lazy=[form_choice_changed])
    app.action(METHOD_ACTION)(ack=ack_action, lazy=[form_choice_changed])
