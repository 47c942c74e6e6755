"""`/finetune` subcommands through the signed HTTP endpoint, answered in Slack."""

from __future__ import annotations

import json

from storage.repositories.outbox import OutboxRepository
from tests.conftest import LiveApi, run_async, run_until
from tests.fakes.slack_server import FakeSlack
from tests.slack.support import SignedSlack, form_values, make_job, view_of
from tunebridge import jobs, subscriptions
from tunebridge.status import JobStatus


def test_help_and_unknown_input_get_usage_in_the_ack_never_a_trace(slack: SignedSlack) -> None:
    for text, expected in [("", "Usage"), ("frobnicate", "Unknown command `frobnicate`"),
                           ('start "unclosed', "Could not read"),
                           ("cancel", "`cancel` needs one job id"),
                           ("list everything", "`list` takes one of")]:
        ack = slack.command(text)
        assert ack.status_code == 200
        body = ack.json()
        assert expected in body["text"] and "/finetune status" in json.dumps(body["blocks"])


def test_status_list_and_errors_come_back_ephemeral(
        slack: SignedSlack, fake_slack: FakeSlack, live: LiveApi) -> None:
    job = make_job(live.runtime, creator="slack:U1", steps=2)
    run_until(live.runtime, job.id, {JobStatus.SUCCEEDED})
    slack.command("status", user="U1")
    slack.command("list mine", user="U1")
    slack.command("status job_doesnotexist", user="U1")
    answers = {c.args["text"][:12]: c.args for c in fake_slack.wait_for("response_url", 3)}
    assert all(a["response_type"] == "ephemeral" for a in answers.values())
    card = next(a for a in answers.values() if a["text"].startswith(job.id))
    assert "succeeded" in json.dumps(card["blocks"]) and "100%" in json.dumps(card["blocks"])
    listing = next(a for a in answers.values() if a["text"] == "1 jobs")
    assert job.id in json.dumps(listing["blocks"])
    missing = next(a for a in answers.values() if "No job" in a["text"])
    assert "job_not_found" in json.dumps(missing["blocks"])


def test_inline_start_lints_out_of_range_values_before_the_job_starts(
        slack: SignedSlack, fake_slack: FakeSlack, live: LiveApi) -> None:
    fake_slack.world.add_file("F0INLINE1", "t.jsonl", b'{"messages": [{"role": "user", '
                              b'"content": "q"}, {"role": "assistant", "content": "a"}]}\n')
    permalink = "https://test.slack.com/files/U1/F0INLINE1/t.jsonl"
    slack.command(f"start <{permalink}> epochs=9 lr=1e-3 model=tiny", user="U1")
    answer = fake_slack.wait_for("response_url")[0].args
    text = json.dumps(answer["blocks"])
    assert "created" in answer["text"] and "n_epochs=9 is outside the recommended 1-5" in text
    assert "learning_rate=0.001 is outside" in text
    job = jobs.list_jobs(db=live.runtime.db, limit=1)[0][0]
    assert job.hyperparameters["n_epochs"] == 9 and job.base_model == "tiny"


def test_a_subscribed_channel_gets_its_own_card_for_each_job_of_the_backend(
        slack: SignedSlack, fake_slack: FakeSlack, live: LiveApi) -> None:
    runtime = live.runtime
    slack.command("subscribe scripted", user="U1", channel="C9")
    slack.command("subscribe nosuchbackend", user="U1", channel="C9")
    answers = [c.args for c in fake_slack.wait_for("response_url", 2)]  # lazy: any order
    ok = next(a for a in answers if "subscribed" in a["text"])
    refused = next(a for a in answers if a is not ok)
    assert ok["response_type"] == "in_channel" and "scripted jobs" in ok["text"]
    assert "not configured" in refused["text"]
    assert [s.backend for s in subscriptions.subscriptions_of(db=runtime.db, channel="C9")] == \
        ["scripted"]

    job = make_job(runtime, channel="C1", steps=2)
    with runtime.db.session() as session:  # what the lifecycle does for every notification
        for row in OutboxRepository(session).for_job(job.id):
            subscriptions.fan_out(session, jobs.get_job(db=runtime.db, job_id=job.id), row)
    run_async(runtime.sender.drain())
    assert fake_slack.world.channel("C9")[0]["metadata"]["event_payload"]["card"] is True
    assert fake_slack.world.channel("C1")[0]["metadata"]["event_payload"]["card"] is True

    slack.command("unsubscribe", user="U1", channel="C9")
    fake_slack.wait_for("response_url", 3)
    assert subscriptions.subscriptions_of(db=runtime.db, channel="C9") == []


def test_details_opens_a_view_and_changing_the_method_re_renders_the_form(
        slack: SignedSlack, fake_slack: FakeSlack, live: LiveApi) -> None:
    job = make_job(live.runtime, steps=2)
    slack.click("job_details", job.id, user="U2")
    details = json.dumps(fake_slack.wait_for("views.open")[0].args["view"])
    assert job.id in details and "lora_r" in details and "Job created by slack:U1" in details

    slack.command("start", user="U1")
    form = view_of(fake_slack.wait_for("views.open", 2)[1].args)
    values = form_values(form, method="dpo")
    slack.interaction({
        "type": "block_actions", "team": {"id": "T1"}, "user": {"id": "U1"}, "api_app_id": "A1",
        "trigger_id": "t", "container": {"type": "view", "view_id": "V1"},
        "view": {**form, "id": "V1", "hash": "h1", "state": {"values": values}},
        "actions": [{"action_id": "pick_method", "block_id": "method", "type": "static_select",
                     "selected_option": {"value": "dpo"}}]})
    update = fake_slack.wait_for("views.update")[0].args
    redrawn = view_of(update)
    assert update["view_id"] == "V1" and update["hash"] == "h1"
    assert '"initial_value": "0.000005"' in json.dumps(redrawn) and "hp:beta" in json.dumps(
        redrawn)
    assert redrawn["private_metadata"] == form["private_metadata"]  # still answers in C1


def test_status_without_jobs_says_so(slack: SignedSlack, fake_slack: FakeSlack) -> None:
    slack.command("status", user="U5")
    assert "no jobs yet" in fake_slack.wait_for("response_url")[0].args["text"]
