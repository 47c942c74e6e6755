"""Nobody gets in: every API route (native and /v1, read from the live OpenAPI document) refuses
a missing, malformed, unknown or revoked key with 401 and a key without the route's scope with
403; Slack requests that are unsigned, forged, stale (> 5 min) or replayed are refused. After all
of it, no table has gained or lost a row and the job is untouched."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlmodel import func, select

from tests.conftest import LiveApi
from tests.fakes.slack_server import BOT_TOKEN, FakeSlack
from tests.reliability.stack import TABLES, wait_for
from tests.slack.support import SIGNING_SECRET, SignedSlack
from tunebridge import api_keys
from tunebridge.runtime import Runtime
from tunebridge.settings import Settings

OPEN = {"/healthz", "/readyz", "/metrics", "/slack/events"}
ADMIN = "UADMIN"


@pytest.fixture
def settings(settings: Settings, fake_slack: FakeSlack) -> Settings:
    return settings.model_copy(update={
        "slack_bot_token": SecretStr(BOT_TOKEN), "slack_signing_secret": SecretStr(SIGNING_SECRET),
        "slack_api_url": fake_slack.api_url, "slack_admin_users": [ADMIN],
        "default_backend": "scripted"})


def _counts(runtime: Runtime) -> dict[str, int]:
    with runtime.db.session() as session:
        return {t.__tablename__: session.exec(select(func.count()).select_from(t)).one()  # type: ignore[attr-defined]
                for t in TABLES}


def _routes(live: LiveApi, ids: dict[str, str]) -> list[tuple[str, str]]:
    with live.client() as http:
        paths = http.get("/openapi.json").json()["paths"]
    routes = []
    for path, methods in paths.items():
        if path in OPEN or path.startswith("/webhooks/"):
            continue
        concrete = re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "x"), path)
        routes += [(method.upper(), concrete) for method in methods]
    return routes


def _send(http: httpx.Client, method: str, path: str, token: str | None) -> Any:
    headers = {"Authorization": token} if token is not None else {}
    body = {"training_dataset_id": "ds_x", "base_model": "m", "model": "m", "training_file": "f"}
    if method == "POST":
        return http.post(path, json=body, headers=headers)
    return http.request(method, path, headers=headers)


def test_keys_and_slack_signatures_let_nobody_in_and_change_nothing(
        live: LiveApi, chat_jsonl: bytes, fake_slack: FakeSlack) -> None:
    runtime = live.runtime
    with live.client() as http:
        dataset = http.post("/api/datasets", content=chat_jsonl).json()["id"]
        jobs = [http.post("/api/jobs", json={"training_dataset_id": dataset, "base_model": "m",
                                            "options": {"scripted_steps": 1000}}).json()["id"]
                for _ in range(2)]
    revoked = api_keys.create_key(db=runtime.db, clock=runtime.clock, name="gone",
                                  scopes=["admin"])
    api_keys.revoke_key(db=runtime.db, clock=runtime.clock, key_id=revoked.key.id)
    cancel_only, read_only = live.key("jobs:cancel"), live.key("read")
    routes = _routes(live, {"job_id": jobs[0], "dataset_id": dataset, "file_id": dataset})
    assert len(routes) >= 15
    before = _counts(runtime)

    refusals: dict[str, list[int]] = {}
    anonymous = live.client("")
    for method, path in routes:
        wrong_scope = read_only if path.endswith(("/cancel", "/pause", "/resume")) \
            else cancel_only
        answers = [_send(anonymous, method, path, token) for token in (
            None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer tb_not-a-real-key",
            f"Bearer {revoked.plaintext}", f"Bearer {revoked.plaintext}x")]
        scoped = _send(anonymous, method, path, f"Bearer {wrong_scope}")
        refusals[f"{method} {path}"] = [a.status_code for a in answers] + [scoped.status_code]
    wrong = {route: codes for route, codes in refusals.items()
             if codes[:-1] != [401] * 6 or codes[-1] not in (401, 403)}
    assert wrong == {}, wrong
    assert sum(codes[-1] == 403 for codes in refusals.values()) >= len(routes) - 2
    print(f"auth: {len(routes)} operations x 7 bad credentials, "
          f"{sum(c[-1] == 403 for c in refusals.values())} answered 403 to the wrong scope")

    slack = SignedSlack(live.url, fake_slack.response_url())
    legit = slack.command_body(f"cancel {jobs[0]}", user=ADMIN)
    headers = slack.signed_headers(legit)
    assert slack.post(legit, headers).status_code == 200
    with live.client() as http:  # the legitimate cancel runs after the ack
        wait_for(lambda: http.get(f"/api/jobs/{jobs[0]}").json()["status"] != "queued",
                 timeout=10, what="the signed cancel")
    time.sleep(0.3)
    before["audit_log"] = _counts(runtime)["audit_log"]
    assert before["audit_log"] == 1  # the one legitimate cancel
    assert slack.post(legit, headers).status_code == 401  # replayed
    other = slack.command_body(f"cancel {jobs[1]}", user=ADMIN)
    for bad in (
        {"Content-Type": "application/x-www-form-urlencoded"},  # unsigned
        {**slack.signed_headers(other), "X-Slack-Signature": "v0=" + "0" * 64},  # forged
        slack.signed_headers(other, timestamp=int(time.time()) - 5 * 60 - 5),  # stale
        slack.signed_headers(other, timestamp=int(time.time()) + 10 * 60),  # from the future
        slack.signed_headers(legit),  # signed for another body
    ):
        assert slack.post(other, bad).status_code == 401
    time.sleep(0.5)  # a lazy listener would have run by now
    after = _counts(runtime)
    before["jobs"], before["job_events"] = after["jobs"], after["job_events"]
    before["notifications"] = after["notifications"]  # the legitimate cancel's own effects
    assert after == before
    with live.client() as http:
        assert http.get(f"/api/jobs/{jobs[1]}").json()["status"] == "queued"
