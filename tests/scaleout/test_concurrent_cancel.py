"""Many on-call people press cancel on one job at the same moment: one wins, the others get a
clear 409, and every attempt is audited once."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from storage.repositories.audit import AuditRepository
from storage.repositories.events import JobEventRepository
from tests.conftest import LiveApi, run_until
from tunebridge.status import JobStatus

CALLERS = 8


def _cancel_at_once(live: LiveApi, job_id: str) -> list[httpx.Response]:
    start = threading.Barrier(CALLERS)

    def cancel(_: int) -> httpx.Response:
        with live.client() as http:
            http.get("/healthz")  # connect first: the barrier then releases requests only
            start.wait()
            return http.post(f"/api/jobs/{job_id}/cancel")

    with ThreadPoolExecutor(CALLERS) as pool:
        return list(pool.map(cancel, range(CALLERS)))


@pytest.mark.parametrize(("submitted", "winner", "refusal"), [
    (True, (202, "cancelling"), "already_cancelling"),
    (False, (200, "cancelled"), "illegal_transition"),
])
def test_concurrent_cancels_one_transition_one_audit_row_each(
        live: LiveApi, chat_jsonl: bytes, submitted: bool, winner: tuple[int, str],
        refusal: str) -> None:
    with live.client() as http:
        dataset_id = http.post("/api/datasets", content=chat_jsonl).json()["id"]
        job_id = http.post("/api/jobs", json={
            "training_dataset_id": dataset_id, "base_model": "m", "backend": "scripted",
            "options": {"scripted_steps": 1000}}).json()["id"]
    if submitted:
        run_until(live.runtime, job_id, {JobStatus.RUNNING})

    answers = _cancel_at_once(live, job_id)

    outcomes = Counter((r.status_code, r.json().get("status") or r.json()["error"]["code"])
                       for r in answers)
    assert outcomes == {winner: 1, (409, refusal): CALLERS - 1}
    with live.runtime.db.session() as session:
        events = JobEventRepository(session).page(job_id, after_id=None, limit=1000)
        audit = AuditRepository(session).for_job(job_id)
    assert [e.to_status for e in events if e.kind == "status"][-1] == winner[1]
    assert sum(e.to_status == winner[1] for e in events) == 1, "more than one transition"
    assert len(audit) == CALLERS
    assert Counter((a.detail or {}).get("outcome") for a in audit if a.action == "cancel") == {
        winner[1]: 1, "refused": CALLERS - 1}
