"""Approve from Slack: a job over a cost/GPU-time cap waits; on-call or an admin releases it.

The creator alone may not: the cap asks for a second person. Refusals are audited.
"""

from __future__ import annotations

import json
from pathlib import Path

from storage.repositories.audit import AuditRepository
from tests.conftest import LiveApi, run_until, stored_dataset, token_counting_model
from tests.fakes.slack_server import FakeSlack
from tests.slack.support import SignedSlack
from tunebridge import jobs
from tunebridge.jobs import JobRequest
from tunebridge.status import JobStatus


def _held_job(live: LiveApi, tmp_path: Path) -> str:
    runtime = live.runtime
    runtime.settings.max_gpu_hours = 0.0
    dataset = stored_dataset(runtime, creator="slack:U1")
    created = jobs.create_job(
        db=runtime.db, registry=runtime.registry, clock=runtime.clock, creator="slack:U1",
        policy=runtime.job_policy,
        request=JobRequest(training_dataset_id=dataset.id,
                           base_model=str(token_counting_model(tmp_path)), backend="scripted",
                           options={"scripted_steps": 3}, notify_channel="C1"))
    assert created.job.status == JobStatus.AWAITING_APPROVAL
    return created.job.id


def _audit(live: LiveApi, job_id: str) -> list[tuple[str, str, str]]:
    with live.runtime.db.session() as session:
        return [(a.actor, a.action, (a.detail or {}).get("outcome", "")) for a in
                AuditRepository(session).for_job(job_id)]


def test_the_creator_is_refused_and_an_admin_approves_by_command(
        slack: SignedSlack, fake_slack: FakeSlack, live: LiveApi, tmp_path: Path) -> None:
    job_id = _held_job(live, tmp_path)
    run_until(live.runtime, job_id, {JobStatus.AWAITING_APPROVAL})

    assert slack.command(f"approve {job_id}", user="U1").status_code == 200
    refusal = fake_slack.wait_for("response_url")[0].args
    assert "Only on-call or an admin can approve" in refusal["text"]
    assert jobs.get_job(db=live.runtime.db, job_id=job_id).status == JobStatus.AWAITING_APPROVAL

    assert slack.command(f"approve {job_id}", user="UADMIN").status_code == 200
    accepted = fake_slack.wait_for("response_url", 2)[1].args
    assert f"approved {job_id}" in accepted["text"] and accepted["response_type"] == "in_channel"
    assert run_until(live.runtime, job_id, {JobStatus.SUCCEEDED}) == JobStatus.SUCCEEDED
    assert _audit(live, job_id)[:2] == [("slack:U1", "approve", "refused"),
                                        ("slack:UADMIN", "approve", "")]


def test_the_card_offers_approve_and_on_call_clicks_it(
        slack: SignedSlack, fake_slack: FakeSlack, live: LiveApi, tmp_path: Path) -> None:
    job_id = _held_job(live, tmp_path)
    run_until(live.runtime, job_id, {JobStatus.AWAITING_APPROVAL})
    card = fake_slack.world.channel("C1")[0]
    assert "approve_job" in json.dumps(card["blocks"])  # the held job's card has the button

    assert slack.click("approve_job", job_id, user="U3", message_ts=card["ts"]).status_code == 200
    answer = fake_slack.wait_for("response_url")[0].args
    assert f"approved {job_id}" in answer["text"]
    assert run_until(live.runtime, job_id, {JobStatus.SUCCEEDED}) == JobStatus.SUCCEEDED
    final = json.dumps(fake_slack.world.channel("C1")[0]["blocks"])
    assert "approve_job" not in final  # no Approve once it has been released
