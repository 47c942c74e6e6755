"""Cancel from Slack: the creator, on-call and admins may; others are refused, and audited."""

from __future__ import annotations

import json

from storage.repositories.audit import AuditRepository
from tests.conftest import LiveApi, run_until, tick
from tests.fakes.slack_server import FakeSlack
from tests.slack.support import SignedSlack, make_job
from tunebridge import jobs
from tunebridge.status import JobStatus


def _audit(live: LiveApi, job_id: str) -> list[tuple[str, str]]:
    with live.runtime.db.session() as session:
        return [(a.actor, (a.detail or {}).get("outcome", "")) for a in
                AuditRepository(session).for_job(job_id)]


def test_a_stranger_is_refused_ephemerally_and_on_call_cancels_the_running_job(
        slack: SignedSlack, fake_slack: FakeSlack, live: LiveApi) -> None:
    runtime = live.runtime
    job = make_job(runtime, creator="slack:U1")
    run_until(runtime, job.id, {JobStatus.RUNNING})
    card = fake_slack.world.channel("C1")[0]
    assert "cancel_job" in json.dumps(card["blocks"])  # the card offers Cancel while running

    assert slack.click("cancel_job", job.id, user="U2", message_ts=card["ts"]).status_code == 200
    refusal = fake_slack.wait_for("response_url")[0].args
    assert refusal["response_type"] == "ephemeral" and refusal["replace_original"] is False
    assert "Only the creator" in refusal["text"]
    assert jobs.get_job(db=runtime.db, job_id=job.id).status == JobStatus.RUNNING
    assert _audit(live, job.id) == [("slack:U2", "refused")]

    assert slack.command(f"cancel {job.id}", user="U3").status_code == 200  # U3 is on-call
    accepted = fake_slack.wait_for("response_url", 2)[1].args
    assert "Cancel of" in accepted["text"] and accepted["response_type"] == "ephemeral"
    assert run_until(runtime, job.id, {JobStatus.CANCELLED}) == JobStatus.CANCELLED
    tick(runtime)
    assert _audit(live, job.id) == [("slack:U2", "refused"), ("slack:U3", "cancelling")]
    assert len(fake_slack.calls_to("usergroups.users.list")) == 1  # cached for the second ask

    thread = fake_slack.world.thread("C1", card["ts"])
    assert any("requested by slack:U3" in m["text"] for m in thread)
    assert any("was cancelled" in m["text"] for m in thread)
    final = json.dumps(fake_slack.world.channel("C1")[0]["blocks"])
    assert "cancelled" in final and "cancel_job" not in final  # no Cancel on a finished job


def test_the_creator_and_an_admin_may_cancel_without_being_on_call(
        slack: SignedSlack, fake_slack: FakeSlack, live: LiveApi) -> None:
    runtime = live.runtime
    mine = make_job(runtime, creator="slack:U1")
    other = make_job(runtime, creator="key:pipeline")
    slack.command(f"cancel {mine.id}", user="U1")
    slack.command(f"cancel {other.id}", user="UADMIN")
    answers = fake_slack.wait_for("response_url", 2)
    assert all("Cancel of" in a.args["text"] for a in answers)
    assert {jobs.get_job(db=runtime.db, job_id=j.id).status for j in (mine, other)} == \
        {JobStatus.CANCELLED}  # never submitted: cancelled at once
    assert fake_slack.calls_to("usergroups.users.list") == []  # creator and admin need no lookup
