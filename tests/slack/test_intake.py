"""Datasets from Slack files and URLs: streamed, validated, errors readable and capped."""

from __future__ import annotations

import json

from tests.conftest import LiveApi, chat_line, jsonl
from tests.fakes.slack_server import FakeSlack
from tests.slack.support import SignedSlack
from tunebridge import jobs


def test_an_invalid_file_answers_its_first_ten_problems_with_lines_and_counts_the_rest(
        slack: SignedSlack, fake_slack: FakeSlack, live: LiveApi) -> None:
    good = jsonl([chat_line("q", "a")])
    fake_slack.world.add_file("F0BROKEN1", "bad.jsonl", good + b"{not json\n" * 40 + good)
    slack.command("start F0BROKEN1", user="U1")
    answer = fake_slack.wait_for("response_url")[0].args
    blocks = answer["blocks"]
    assert answer["response_type"] == "ephemeral" and len(blocks) <= 50
    listed = blocks[1]["text"]["text"]
    assert listed.count("• line") == 10 and "• line 2" in listed
    assert "…and 30 more" in listed
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in blocks)
    assert jobs.list_jobs(db=live.runtime.db, limit=1)[0] == []  # nothing started


def test_urls_only_from_allowed_hosts_and_never_with_the_bot_token(
        slack: SignedSlack, fake_slack: FakeSlack, live: LiveApi) -> None:
    fake_slack.world.public["train.jsonl"] = jsonl([chat_line(f"q{i}", "a") for i in range(3)])
    slack.command("start https://evil.example/train.jsonl", user="U1")
    refused = fake_slack.wait_for("response_url")[0].args
    assert "can only be fetched from: 127.0.0.1" in refused["text"]

    slack.command(f"start {fake_slack.base}/public/train.jsonl", user="U1")
    created = fake_slack.wait_for("response_url", 2)[1].args
    assert "created" in created["text"]
    fetch = fake_slack.calls_to("public")[0]
    assert "authorization" not in fetch.headers
    job = jobs.list_jobs(db=live.runtime.db, limit=1)[0][0]
    assert job.creator == "slack:U1" and json.dumps(created["blocks"]).count(job.id) == 1
