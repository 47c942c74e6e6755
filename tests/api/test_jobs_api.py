"""Jobs over HTTP: create, list with cursors, follow through the poller, cancel, audit."""

from __future__ import annotations

import time

import httpx

from storage.repositories.audit import AuditRepository
from storage.repositories.outbox import OutboxRepository
from tests.conftest import LiveApi, jsonl, run_until, tick
from tests.fakes.scripted_backend import ScriptedBackend


def _dataset(http: httpx.Client, data: bytes) -> str:
    response = http.post("/api/datasets", content=data)
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


def _start(http: httpx.Client, dataset_id: str, **extra: object) -> httpx.Response:
    body = {"training_dataset_id": dataset_id, "base_model": "tiny", "backend": "scripted",
            **extra}
    return http.post("/api/jobs", json=body)


def test_create_job_fills_seed_defaults_and_lints(live: LiveApi, chat_jsonl: bytes) -> None:
    with live.client() as http:
        dataset_id = _dataset(http, chat_jsonl)
        response = _start(http, dataset_id, hyperparameters={"learning_rate": 1e-3})
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] == "queued"
    assert job["hyperparameters"]["n_epochs"] == 3
    assert job["hyperparameters"]["lora_r"] == 16
    assert job["hyperparameters"]["warmup_ratio"] == 0.03
    assert job["hyperparameters"]["learning_rate"] == 1e-3
    assert [w["field"] for w in job["warnings"]] == ["hyperparameters.learning_rate"]


def test_bad_job_requests_are_422_or_404(live: LiveApi, chat_jsonl: bytes) -> None:
    with live.client() as http:
        dataset_id = _dataset(http, chat_jsonl)
        unknown_backend = _start(http, dataset_id, backend="nope")
        unusable = _start(http, dataset_id, hyperparameters={"learning_rate": -1})
        wrong_format = _start(http, dataset_id, method="dpo")
        missing = _start(http, "ds_missing")
        extra_field = _start(http, dataset_id, colour="blue")
    assert unknown_backend.status_code == 422
    assert unknown_backend.json()["error"]["code"] == "unknown_backend"
    assert unusable.status_code == 422
    assert unusable.json()["error"]["problems"][0]["field"] == "hyperparameters.learning_rate"
    assert wrong_format.json()["error"]["code"] == "dataset_format_mismatch"
    assert missing.status_code == 404
    assert extra_field.status_code == 422
    assert extra_field.json()["error"]["problems"][0]["field"] == "colour"


def test_job_runs_to_success_with_metrics_events_and_notifications(
        live: LiveApi, chat_jsonl: bytes, scripted: ScriptedBackend) -> None:
    with live.client() as http:
        job_id = _start(http, _dataset(http, chat_jsonl),
                        options={"scripted_step_seconds": 0.1}).json()["id"]
        tick(live.runtime)  # submit
        time.sleep(0.25)
        tick(live.runtime)  # partway
        partial = http.get(f"/api/jobs/{job_id}/metrics").json()["data"]
        run_until(live.runtime, job_id, {"succeeded"})
        job = http.get(f"/api/jobs/{job_id}").json()
        metrics = http.get(f"/api/jobs/{job_id}/metrics").json()["data"]
        events = http.get(f"/api/jobs/{job_id}/events").json()["data"]
    assert 0 < len(partial) < 10
    assert job["status"] == "succeeded"
    assert job["result"] == {"model": "scripted:10", "steps": 10}
    assert [m["step"] for m in metrics] == list(range(1, 11))
    assert metrics[0]["train_loss"] > metrics[-1]["train_loss"]
    statuses = [e["to_status"] for e in events if e["kind"] == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    assert [e["message"] for e in events if e["kind"] == "backend"][1:] == [
        "Step 5/10", "Step 10/10"]
    with live.runtime.db.session() as session:
        sent = OutboxRepository(session).for_job(job_id)
    assert [n.state for n in sent] == ["sent"] * 4
    assert [n.kind for n in sent] == ["status"] * 3 + ["completion_summary"]
    assert scripted.calls.count("submit") == 1


def test_list_jobs_pages_with_a_cursor_and_filters(live: LiveApi, chat_jsonl: bytes) -> None:
    with live.client() as http:
        dataset_id = _dataset(http, chat_jsonl)
        ids = [_start(http, dataset_id).json()["id"] for _ in range(5)]
        http.post(f"/api/jobs/{ids[0]}/cancel")
        first = http.get("/api/jobs", params={"limit": 2}).json()
        second = http.get("/api/jobs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        third = http.get("/api/jobs", params={"limit": 2, "cursor": second["next_cursor"]}).json()
        cancelled = http.get("/api/jobs", params={"status": "cancelled"}).json()
        bad = http.get("/api/jobs", params={"status": "sleeping"})
    seen = [j["id"] for page in (first, second, third) for j in page["data"]]
    assert seen == list(reversed(ids))
    assert third["has_more"] is False and third["next_cursor"] is None
    assert [j["id"] for j in cancelled["data"]] == [ids[0]]
    assert bad.status_code == 422


def test_cancel_running_job_is_forwarded_once_and_audited(
        live: LiveApi, chat_jsonl: bytes, scripted: ScriptedBackend) -> None:
    with live.client() as http:
        job_id = _start(http, _dataset(http, chat_jsonl),
                        options={"scripted_steps": 1000}).json()["id"]
        run_until(live.runtime, job_id, {"running"})
        accepted = http.post(f"/api/jobs/{job_id}/cancel")
        repeated = http.post(f"/api/jobs/{job_id}/cancel")
        tick(live.runtime)
        tick(live.runtime)
        final = http.get(f"/api/jobs/{job_id}").json()
        again = http.post(f"/api/jobs/{job_id}/cancel")
    assert accepted.status_code == 202
    assert accepted.json()["status"] == "cancelling"
    assert repeated.status_code == 409
    assert repeated.json()["error"]["code"] == "already_cancelling"
    assert final["status"] == "cancelled"
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "illegal_transition"
    assert scripted.calls.count("cancel") == 1
    with live.runtime.db.session() as session:
        audit = AuditRepository(session).for_job(job_id)
    assert [a.detail["outcome"] for a in audit if a.detail] == ["cancelling", "refused",
                                                                 "refused"]
    assert all(a.source == "http" and a.remote == "127.0.0.1" for a in audit)


def test_cancel_before_submission_is_immediate(live: LiveApi, chat_jsonl: bytes) -> None:
    with live.client() as http:
        job_id = _start(http, _dataset(http, chat_jsonl)).json()["id"]
        response = http.post(f"/api/jobs/{job_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


def test_provider_outage_backs_off_and_never_fails_the_job(
        live: LiveApi, chat_jsonl: bytes, scripted: ScriptedBackend) -> None:
    from backends.base import BackendError

    with live.client() as http:
        job_id = _start(http, _dataset(http, chat_jsonl)).json()["id"]
        scripted.fail_next = [BackendError("503 from provider", retry_after=0.05)] * 3
        for _ in range(3):
            tick(live.runtime)
            time.sleep(0.06)
        assert http.get(f"/api/jobs/{job_id}").json()["status"] == "queued"
        time.sleep(0.1)
        assert run_until(live.runtime, job_id, {"succeeded", "failed"}) == "succeeded"
    assert scripted.submissions(job_id) == 1


def test_metric_points_are_not_duplicated_when_a_poll_is_replayed(
        live: LiveApi, chat_jsonl: bytes) -> None:
    """A crash after the provider answered but before we committed replays the same update."""
    import asyncio

    from backends.base import Handle

    with live.client() as http:
        job_id = _start(http, _dataset(http, chat_jsonl)).json()["id"]
        run_until(live.runtime, job_id, {"succeeded"})
        backend = live.runtime.registry.get("scripted")
        update = asyncio.run(backend.poll(Handle(external_id=f"scr-{job_id}"), None))
        live.runtime.poller.record_update(job_id, update)
        live.runtime.poller.record_update(job_id, update)
        metrics = http.get(f"/api/jobs/{job_id}/metrics").json()["data"]
        events = http.get(f"/api/jobs/{job_id}/events").json()["data"]
    assert [m["step"] for m in metrics] == list(range(1, 11))
    backend_messages = [e["message"] for e in events if e["kind"] == "backend"]
    assert len(backend_messages) == len(set(backend_messages))


def test_unknown_job_is_404(live: LiveApi) -> None:
    with live.client() as http:
        for path in ("/api/jobs/job_x", "/api/jobs/job_x/events", "/api/jobs/job_x/metrics"):
            response = http.get(path)
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "job_not_found"
        assert http.post("/api/jobs/job_x/cancel").status_code == 404


def test_invalid_dataset_upload_needs_text_format_for_sft(live: LiveApi) -> None:
    with live.client() as http:
        dataset_id = _dataset(http, jsonl([{"text": f"row {i}"} for i in range(3)]))
        response = _start(http, dataset_id)
    assert response.status_code == 201
