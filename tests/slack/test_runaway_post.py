"""A runaway job is flagged in its Slack thread once, mentioning the creator and the on-call
group; the completion summary that follows carries the loss chart."""

from __future__ import annotations

import json
import time

from tests.conftest import LiveApi, chat_line, jsonl, run_until, tick
from tests.fakes.slack_server import FakeSlack
from tests.slack.conftest import ONCALL_GROUP
from tunebridge.jobs import Actor, cancel_job, get_job


def test_a_runaway_is_posted_once_with_on_call_mentioned(live: LiveApi,
                                                          fake_slack: FakeSlack) -> None:
    runtime = live.runtime
    with live.client() as http:
        data = jsonl([chat_line(f"q{i}", f"a{i}") for i in range(12)])
        dataset_id = http.post("/api/datasets", content=data).json()["id"]
        job_id = http.post("/api/jobs", json={
            "training_dataset_id": dataset_id, "base_model": "m", "backend": "scripted",
            "notify": {"slack_channel": "C1"},
            "options": {"scripted_step_seconds": 0.02, "scripted_steps": 100_000,
                        "max_runtime_s": 0.5}}).json()["id"]
    run_until(runtime, job_id, {"running"})
    time.sleep(0.6)
    for _ in range(4):
        tick(runtime)
    assert get_job(db=runtime.db, job_id=job_id).status == "running"  # flagged, not cancelled
    cancel_job(db=runtime.db, clock=runtime.clock, job_id=job_id,
               actor=Actor(name="slack:U3", source="slack"))
    run_until(runtime, job_id, {"cancelled"})
    tick(runtime)

    card = fake_slack.world.channel("C1")[0]
    thread = fake_slack.world.thread("C1", card["ts"])
    runaway = [m for m in thread if "Runaway job" in m["text"]]
    assert len(runaway) == 1
    blocks = json.dumps(runaway[0]["blocks"])
    assert f"<!subteam^{ONCALL_GROUP}>" in blocks and "time budget" in blocks
    summary = [m for m in thread if "Train loss: final" in m["text"]]
    assert len(summary) == 1 and summary[0]["metadata"]["event_payload"]["chart"] == "done"
    assert len(fake_slack.world.uploaded_pngs()) == 1
