"""HTTP mode only answers requests Slack signed, recently, once."""

from __future__ import annotations

import time

from tests.fakes.slack_server import FakeSlack
from tests.slack.support import SignedSlack


def test_a_signed_command_is_answered_and_bad_stale_or_replayed_ones_are_refused(
        slack: SignedSlack, fake_slack: FakeSlack) -> None:
    body = slack.command_body("help")
    headers = slack.signed_headers(body)
    ok = slack.post(body, headers)
    assert ok.status_code == 200
    assert "/finetune start" in ok.json()["text"] + str(ok.json()["blocks"])

    assert slack.post(body, headers).status_code == 401  # replayed: same signature again

    forged = {**slack.signed_headers(body), "X-Slack-Signature": "v0=" + "0" * 64}
    assert slack.post(body, forged).status_code == 401

    stale = slack.signed_headers(body, timestamp=int(time.time()) - 6 * 60)
    assert slack.post(body, stale).status_code == 401

    unsigned = {"Content-Type": "application/x-www-form-urlencoded"}
    assert slack.post(body, unsigned).status_code == 401

    tampered = slack.signed_headers(body)
    assert slack.post(body.replace("help", "list+all"), tampered).status_code == 401

    time.sleep(0.3)  # a refused request must not have run any listener
    assert fake_slack.calls_to("response_url") == []
