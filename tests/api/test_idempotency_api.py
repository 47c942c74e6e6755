"""Idempotency-Key on POST: the retry gets the first answer; a changed body is refused."""

from __future__ import annotations

from sqlmodel import select

from storage.tables import Job
from tests.conftest import LiveApi


def _job_count(live: LiveApi) -> int:
    with live.runtime.db.session() as session:
        return len(list(session.exec(select(Job.id))))


def test_retry_returns_the_first_response_and_creates_one_job(live: LiveApi,
                                                               chat_jsonl: bytes) -> None:
    with live.client() as http:
        dataset_id = http.post("/api/datasets", content=chat_jsonl,
                               headers={"Idempotency-Key": "up-1"}).json()["id"]
        body = {"training_dataset_id": dataset_id, "base_model": "m", "backend": "scripted"}
        first = http.post("/api/jobs", json=body, headers={"Idempotency-Key": "k-1"})
        retry = http.post("/api/jobs", json=body, headers={"Idempotency-Key": "k-1"})
        upload_retry = http.post("/api/datasets", content=chat_jsonl,
                                 headers={"Idempotency-Key": "up-1"})
    assert first.status_code == 201
    assert retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    assert upload_retry.json()["id"] == dataset_id
    assert _job_count(live) == 1


def test_same_key_different_body_is_refused(live: LiveApi, chat_jsonl: bytes) -> None:
    with live.client() as http:
        dataset_id = http.post("/api/datasets", content=chat_jsonl).json()["id"]
        body = {"training_dataset_id": dataset_id, "base_model": "m", "backend": "scripted"}
        http.post("/api/jobs", json=body, headers={"Idempotency-Key": "k-2"})
        changed = http.post("/api/jobs", json={**body, "base_model": "other"},
                            headers={"Idempotency-Key": "k-2"})
    assert changed.status_code == 409
    assert changed.json()["error"]["code"] == "idempotency_key_reused"
    assert _job_count(live) == 1


def test_keys_are_scoped_per_credential(live: LiveApi, chat_jsonl: bytes) -> None:
    other = live.key("admin")
    with live.client() as http:
        dataset_id = http.post("/api/datasets", content=chat_jsonl).json()["id"]
    body = {"training_dataset_id": dataset_id, "base_model": "m", "backend": "scripted"}
    with live.client() as http:
        mine = http.post("/api/jobs", json=body, headers={"Idempotency-Key": "shared"})
    with live.client(other) as http:
        theirs = http.post("/api/jobs", json=body, headers={"Idempotency-Key": "shared"})
    assert mine.json()["id"] != theirs.json()["id"]


def test_client_errors_are_replayed(live: LiveApi) -> None:
    body = {"training_dataset_id": "ds_missing", "base_model": "m", "backend": "scripted"}
    with live.client() as http:
        first = http.post("/api/jobs", json=body, headers={"Idempotency-Key": "k-3"})
        again = http.post("/api/jobs", json=body, headers={"Idempotency-Key": "k-3"})
    assert first.status_code == 404
    assert again.status_code == 404
    assert again.headers.get("idempotent-replayed") == "true"
