"""Requests as Slack sends them: form bodies signed with the real signature scheme."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

from storage.tables import Job
from tests.conftest import stored_dataset
from tunebridge import jobs
from tunebridge.jobs import JobRequest
from tunebridge.runtime import Runtime

SIGNING_SECRET = "test-signing-secret"
TEAM = "T1"


class SignedSlack:
    """Plays Slack's side of HTTP mode against the gateway's `/slack/events`."""

    def __init__(self, base_url: str, response_url: str, secret: str = SIGNING_SECRET) -> None:
        self.url = f"{base_url}/slack/events"
        self.response_url = response_url
        self.verifier = SignatureVerifier(secret)
        self.http = httpx.Client(timeout=30)

    def signed_headers(self, body: str, timestamp: int | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        return {"X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": self.verifier.generate_signature(timestamp=ts, body=body),
                "Content-Type": "application/x-www-form-urlencoded"}

    def post(self, body: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.post(self.url, content=body.encode(),
                              headers=headers or self.signed_headers(body))

    def command_body(self, text: str, *, user: str = "U1", channel: str = "C1") -> str:
        return urlencode({
            "token": "legacy", "team_id": TEAM, "team_domain": "test", "channel_id": channel,
            "channel_name": "ml", "user_id": user, "user_name": user.lower(),
            "command": "/finetune", "text": text, "api_app_id": "A1", "is_enterprise_install":
            "false", "response_url": self.response_url, "trigger_id": f"trig-{time.time_ns()}"})

    def command(self, text: str, *, user: str = "U1", channel: str = "C1") -> httpx.Response:
        return self.post(self.command_body(text, user=user, channel=channel))

    def interaction(self, payload: dict[str, Any]) -> httpx.Response:
        return self.post(urlencode({"payload": json.dumps(payload)}))

    def click(self, action_id: str, value: str, *, user: str, channel: str = "C1",
              message_ts: str = "1.0") -> httpx.Response:
        return self.interaction({
            "type": "block_actions", "team": {"id": TEAM}, "user": {"id": user},
            "api_app_id": "A1", "token": "legacy", "trigger_id": f"trig-{time.time_ns()}",
            "channel": {"id": channel}, "container": {"type": "message",
                                                      "message_ts": message_ts},
            "message": {"ts": message_ts, "text": "card"}, "response_url": self.response_url,
            "actions": [{"action_id": action_id, "block_id": f"job:{value}", "value": value,
                         "type": "button", "action_ts": str(time.time())}]})

    def submit(self, view: dict[str, Any], values: dict[str, Any], *, user: str = "U1"
               ) -> httpx.Response:
        return self.interaction({
            "type": "view_submission", "team": {"id": TEAM}, "user": {"id": user},
            "api_app_id": "A1", "token": "legacy", "trigger_id": f"trig-{time.time_ns()}",
            "view": {**view, "id": "V1", "hash": "h1", "state": {"values": values}}})


def form_values(view: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The state Slack would submit for `view` as rendered (initial values), plus overrides:
    `dataset_file=["F1"]` or any block id → value."""
    values: dict[str, Any] = {}
    for block in view["blocks"]:
        if block.get("type") != "input":
            continue
        element, block_id = block["element"], block["block_id"]
        state: dict[str, Any] = {"type": element["type"]}
        if element["type"] == "file_input":
            state["files"] = [{"id": f} for f in overrides.get(block_id, [])]
        elif element["type"] == "static_select":
            chosen = overrides.get(block_id, element["initial_option"]["value"])
            state["selected_option"] = {"value": chosen}
        else:
            state["value"] = overrides.get(block_id, element.get("initial_value"))
        values[block_id] = {element["action_id"]: state}
    return values


def make_job(runtime: Runtime, *, creator: str = "slack:U1", channel: str = "C1",
             steps: int = 1000) -> Job:
    """A job as `/finetune start` would create it, with the scripted backend's length set."""
    dataset = stored_dataset(runtime, creator=creator)
    return jobs.create_job(
        db=runtime.db, registry=runtime.registry, clock=runtime.clock, creator=creator,
        policy=runtime.job_policy,
        request=JobRequest(training_dataset_id=dataset.id, base_model="tiny", backend="scripted",
                           options={"scripted_steps": steps}, notify_channel=channel)).job


def view_of(args: dict[str, Any]) -> dict[str, Any]:
    """The `view` argument of views.open/update (a JSON body object, or a form string)."""
    view = args["view"]
    return json.loads(view) if isinstance(view, str) else dict(view)
