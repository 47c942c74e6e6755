"""Bearer keys and scopes: 401 for who-are-you, 403 for not-allowed; revoked keys stop working."""

from __future__ import annotations

import pytest

from storage.repositories.api_keys import ApiKeyRepository
from tests.conftest import LiveApi
from tunebridge import api_keys


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer tb_wrong", "Basic abc", "tb_x"])
def test_missing_or_invalid_keys_are_401(live: LiveApi, header: str | None) -> None:
    with live.client(key="") as http:
        headers = {"Authorization": header} if header else {}
        response = http.get("/api/jobs", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_revoked_key_is_401(live: LiveApi) -> None:
    key = live.key("read")
    with live.client(key) as http:
        assert http.get("/api/jobs").status_code == 200
        key_id = next(k.id for k in api_keys.list_keys(db=live.runtime.db) if k.name == "test")
        api_keys.revoke_key(db=live.runtime.db, clock=live.runtime.clock, key_id=key_id)
        response = http.get("/api/jobs")
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


def test_scopes_gate_each_route(live: LiveApi, chat_jsonl: bytes) -> None:
    reader = live.key("read")
    uploader = live.key("datasets:write")
    with live.client(reader) as http:
        denied = http.post("/api/datasets", content=chat_jsonl)
        assert denied.status_code == 403
        assert denied.json()["error"]["details"] == {"required": "datasets:write"}
    with live.client(uploader) as http:
        dataset_id = http.post("/api/datasets", content=chat_jsonl).json()["id"]
        assert http.get("/api/jobs").status_code == 403
        body = {"training_dataset_id": dataset_id, "base_model": "m", "backend": "scripted"}
        assert http.post("/api/jobs", json=body).status_code == 403
    with live.client(live.key("jobs:write", "read")) as http:
        job_id = http.post("/api/jobs", json=body).json()["id"]
        assert http.post(f"/api/jobs/{job_id}/cancel").status_code == 403
    with live.client(live.key("jobs:cancel")) as http:
        assert http.post(f"/api/jobs/{job_id}/cancel").status_code == 200


def test_keys_are_stored_only_as_hashes(live: LiveApi) -> None:
    plaintext = live.key("read")
    with live.runtime.db.session() as session:
        stored = ApiKeyRepository(session).all()
    assert all(plaintext not in (k.key_hash, k.prefix) for k in stored)
    assert any(k.key_hash == api_keys.hash_key(plaintext) for k in stored)


def test_health_needs_no_key_and_reports_readiness(live: LiveApi) -> None:
    with live.client(key="") as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz")
        metrics = http.get("/metrics")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": "ok", "schema": "ok"}
    assert "tunebridge_http_requests_total" in metrics.text
    assert 'route="/readyz"' in metrics.text


def test_openapi_lists_the_native_api(live: LiveApi) -> None:
    with live.client(key="") as http:
        paths = http.get("/openapi.json").json()["paths"]
    for path in ("/api/datasets", "/api/jobs", "/api/jobs/{job_id}/cancel",
                 "/api/jobs/{job_id}/events", "/api/jobs/{job_id}/metrics"):
        assert path in paths
