"""Idempotency-Key on POST: the retry gets the first answer; a changed body is refused."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import httpx
from sqlmodel import select

from storage.repositories.idempotency import IdempotencyRepository
from storage.tables import IdempotencyRecord, Job
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


def _claim_left_by_a_dead_request(live: LiveApi, http: httpx.Client, key: str, body: bytes,
                                  age: timedelta) -> None:
    """The row a request leaves when its process is SIGKILLed after claiming the key."""
    scope = hashlib.sha256(http.headers["authorization"].encode()).hexdigest()[:32]
    with live.runtime.db.session() as session:
        IdempotencyRepository(session).add(IdempotencyRecord(
            scope=scope, key=key,
            request_hash=hashlib.sha256(b"POST /api/jobs?" + body).hexdigest(),
            created_at=datetime.now(UTC) - age))


def test_a_claim_left_by_a_dead_request_is_taken_over_after_its_lease(
        live: LiveApi, chat_jsonl: bytes) -> None:
    with live.client() as http:
        dataset_id = http.post("/api/datasets", content=chat_jsonl).json()["id"]
        body = json.dumps({"training_dataset_id": dataset_id, "base_model": "m",
                           "backend": "scripted"}).encode()
        headers = {"Content-Type": "application/json"}
        _claim_left_by_a_dead_request(live, http, "fresh", body, timedelta(seconds=5))
        _claim_left_by_a_dead_request(live, http, "stale", body, timedelta(minutes=20))
        fresh = http.post("/api/jobs", content=body,
                          headers={**headers, "Idempotency-Key": "fresh"})
        stale = http.post("/api/jobs", content=body,
                          headers={**headers, "Idempotency-Key": "stale"})
        replay = http.post("/api/jobs", content=body,
                           headers={**headers, "Idempotency-Key": "stale"})
    assert fresh.status_code == 409, fresh.text  # it may still be running somewhere
    assert fresh.json()["error"]["code"] == "idempotency_key_in_use"
    assert stale.status_code == 201, stale.text  # 20 min > the 15 min lease: taken over
    assert replay.json() == stale.json() and replay.headers["idempotent-replayed"] == "true"
    assert _job_count(live) == 1
