"""Dataset upload over HTTP: streaming, dedup by content, line-numbered errors, limits."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import LiveApi, chat_line, jsonl


def test_upload_raw_body_creates_dataset_and_dedups_by_content(live: LiveApi,
                                                               chat_jsonl: bytes) -> None:
    with live.client() as http:
        first = http.post("/api/datasets", content=chat_jsonl, params={"filename": "a.jsonl"},
                          headers={"Content-Type": "application/jsonl"})
        again = http.post("/api/datasets", content=chat_jsonl, params={"filename": "b.jsonl"})
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["format"] == "chat"
    assert body["num_examples"] == 12
    assert body["size_bytes"] == len(chat_jsonl)
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]
    stored = Path(live.runtime.blobs.path_for(body["sha256"]))
    assert stored.read_bytes() == chat_jsonl


def test_upload_multipart_file(live: LiveApi, chat_jsonl: bytes) -> None:
    with live.client() as http:
        response = http.post("/api/datasets",
                             files={"file": ("train.jsonl", chat_jsonl, "application/jsonl")})
    assert response.status_code == 201, response.text
    assert response.json()["filename"] == "train.jsonl"


def test_malformed_jsonl_gets_line_numbered_errors_and_stores_nothing(live: LiveApi) -> None:
    good = jsonl([chat_line("q", "a")])
    no_answer = b'{"messages": [{"role": "user", "content": "x"}]}\n'
    bad = good + b'{"messages": [}\n' + good + b'[1, 2]\n' + no_answer
    with live.client() as http:
        response = http.post("/api/datasets", content=bad)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_dataset"
    by_line: dict[int, set[str]] = {}
    for problem in error["problems"]:
        by_line.setdefault(problem["line"], set()).add(problem["code"])
    assert "invalid_json" in by_line[2]
    assert "not_object" in by_line[4]
    assert "no_assistant_message" in by_line[5]
    errors_on = {p["line"] for p in error["problems"] if p.get("severity") == "error"}
    assert errors_on == {2, 4, 5}
    blobs = list(live.runtime.blobs.root.rglob("*.jsonl"))
    assert blobs == []
    assert list((live.runtime.blobs.root / ".staging").iterdir()) == []


def test_upload_over_the_cap_is_413(live: LiveApi) -> None:
    live.runtime.settings.max_upload_bytes = 1000
    with live.client() as http:
        response = http.post("/api/datasets", content=b"x" * 5000)
        streamed = http.post("/api/datasets",
                             content=iter([b'{"text": "' + b"y" * 600 + b'"}\n'] * 3))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert streamed.status_code == 413


def test_filenames_never_become_paths(live: LiveApi, chat_jsonl: bytes) -> None:
    with live.client() as http:
        response = http.post("/api/datasets", content=chat_jsonl,
                             params={"filename": "../../etc/passwd"})
    assert response.status_code == 201
    body = response.json()
    assert body["filename"] == "passwd"
    assert Path(live.runtime.blobs.path_for(body["sha256"])).is_relative_to(
        live.runtime.blobs.root)


def test_get_dataset_and_unknown_id(live: LiveApi, chat_jsonl: bytes) -> None:
    with live.client() as http:
        created = http.post("/api/datasets", content=chat_jsonl).json()
        fetched = http.get(f"/api/datasets/{created['id']}")
        missing = http.get("/api/datasets/ds_nope")
    assert fetched.json()["sha256"] == created["sha256"]
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "dataset_not_found"
