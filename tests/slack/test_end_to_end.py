"""`/finetune start` → form → job on the scripted backend → card, thread, chart in Slack."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from tests.conftest import LiveApi, chat_line, jsonl, run_until, tick
from tests.fakes.slack_server import FakeSlack
from tests.slack.support import SignedSlack, form_values, view_of
from tunebridge import jobs
from tunebridge.lifecycle import notify
from tunebridge.status import JobStatus


def _metadata_keys(messages: list[dict[str, Any]]) -> list[str]:
    return [m["metadata"]["event_payload"]["dedupe_key"] for m in messages if "metadata" in m]


def _open_form(slack: SignedSlack, fake_slack: FakeSlack) -> dict[str, Any]:
    ack = slack.command("start", user="U1", channel="C1")
    assert ack.status_code == 200 and ack.content in (b"", b"{}")
    return view_of(fake_slack.wait_for("views.open")[0].args)


def test_start_form_runs_a_job_and_its_thread_shows_card_progress_warning_and_chart(
        slack: SignedSlack, fake_slack: FakeSlack, live: LiveApi) -> None:
    runtime = live.runtime
    fake_slack.world.add_file("F0TRAIN01", "train.jsonl",
                              jsonl([chat_line(f"q{i}", f"a{i}") for i in range(12)]))
    view = _open_form(slack, fake_slack)
    hints = json.dumps(view["blocks"], ensure_ascii=False)
    assert '"initial_value": "0.0002"' in hints and "Recommended 1e-05–0.0005" in hints

    values = form_values(view, dataset_file=["F0TRAIN01"], **{"hp:n_epochs": "1"})
    ack = slack.submit(view, values)
    assert ack.status_code == 200 and ack.content in (b"", b"{}")  # the form closes at once
    created = fake_slack.wait_for("response_url")[0].args
    assert "created" in created["text"]
    download = fake_slack.calls_to("download")[0]
    assert download.headers["authorization"] == "Bearer " + fake_slack.world.bot_token

    job = jobs.list_jobs(db=runtime.db, limit=5)[0][0]
    assert (job.creator, job.slack_channel, job.hyperparameters["n_epochs"]) == \
        ("slack:U1", "C1", 1)
    run_until(runtime, job.id, {JobStatus.RUNNING})
    with runtime.db.session() as session:
        notify(session, jobs.get_job(db=runtime.db, job_id=job.id), kind="health",
               dedupe_key=f"{job.id}:health:overfitting", now=datetime.now().astimezone(),
               text="Validation loss is rising while train loss falls (overfitting).",
               data={"fixes": ["Reduce epochs (try 1-2)", "Add dropout (0.05-0.1)"]})
    assert run_until(runtime, job.id, {JobStatus.SUCCEEDED}) == JobStatus.SUCCEEDED
    tick(runtime)

    card = fake_slack.world.channel("C1")[0]
    assert card["metadata"]["event_payload"]["card"] is True
    assert jobs.get_job(db=runtime.db, job_id=job.id).slack_thread_ts == card["ts"]
    final = json.dumps(card["blocks"])
    assert "succeeded" in final and "100%" in final and "scripted:10" in final
    edits = [c for c in fake_slack.calls_to("chat.update") if c.args.get("ts") == card["ts"]]
    assert len(edits) >= 2  # running, then succeeded (plus throttled progress edits)

    thread = fake_slack.world.thread("C1", card["ts"])
    texts = [m["text"] for m in thread]
    assert any("is running" in t for t in texts) and any("succeeded" in t for t in texts)
    warning = next(m for m in thread if "overfitting" in m["text"])
    assert "<@U1>" in json.dumps(warning["blocks"]) and "Add dropout" in json.dumps(
        warning["blocks"])
    keys = _metadata_keys(thread)
    assert len(keys) == len(set(keys))  # nothing posted twice

    complete = fake_slack.wait_for("files.completeUploadExternal")[0].args
    assert (complete["channel_id"], complete["thread_ts"]) == ("C1", card["ts"])
    assert len(fake_slack.world.uploaded_pngs()) == 1
    summary = [m for m in thread if "Train loss: final" in m["text"]]
    assert len(summary) == 1 and summary[0]["metadata"]["event_payload"]["chart"] == "done"
    assert "Findings: none." in summary[0]["text"]  # the hand-queued warning is not an event
