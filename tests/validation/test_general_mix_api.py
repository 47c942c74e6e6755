"""Forgetting guard through HTTP: a job with `general_mix` trains on a stored, validated mix."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveApi, chat_line, jsonl, run_until
from tests.fakes.scripted_backend import ScriptedBackend
from tunebridge.mixing import BUILTIN_GENERAL


def _upload(http: httpx.Client, prefix: str, count: int) -> dict[str, Any]:
    body = jsonl([chat_line(f"{prefix} question {n}?", f"{prefix} answer {n}.")
                  for n in range(count)])
    response = http.post("/api/datasets", content=body)
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def _start(http: httpx.Client, dataset_id: str, mix: Any, **extra: Any) -> httpx.Response:
    body = {"training_dataset_id": dataset_id, "base_model": "tiny", "backend": "scripted",
            "options": {"scripted_step_seconds": 0.01}, "general_mix": mix, **extra}
    return http.post("/api/jobs", json=body)


def _mixed_file(live: LiveApi, job: dict[str, Any]) -> Path:
    with live.client() as http:
        mixed = http.get(f"/api/datasets/{job['training_dataset_id']}").json()
    return Path(live.runtime.blobs.path_for(mixed["sha256"]))


def test_job_trains_on_a_reproducible_mix_with_the_counts_recorded(live: LiveApi) -> None:
    with live.client() as http:
        task = _upload(http, "task", 50)
        general = _upload(http, "general", 200)
        mix = {"dataset_id": general["id"], "fraction": 0.2, "seed": 7}
        first = _start(http, task["id"], mix)
        second = _start(http, task["id"], mix)
        other_seed = _start(http, task["id"], mix | {"seed": 8})
        assert first.status_code == second.status_code == 201, first.text
        job, again = first.json(), second.json()
        events = http.get(f"/api/jobs/{job['id']}/events").json()["data"]
    assert job["training_dataset_id"] not in (task["id"], general["id"])
    assert again["training_dataset_id"] == job["training_dataset_id"]  # same bytes, same dataset
    assert other_seed.json()["training_dataset_id"] != job["training_dataset_id"]
    record = job["options"]["general_mix"]
    assert (record["task_dataset_id"], record["general_dataset_id"]) == (task["id"],
                                                                          general["id"])
    assert (record["task_examples"], record["general_examples"]) == (50, round(0.2 * 50))
    path = _mixed_file(live, job)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"]
    questions = [json.loads(line)["messages"][0]["content"] for line in path.open()]
    assert sum(q.startswith("task") for q in questions) == 50
    assert sum(q.startswith("general") for q in questions) == 10
    mixed_event = [e for e in events if e["kind"] == "dataset"]
    assert len(mixed_event) == 1 and mixed_event[0]["data"]["general_examples"] == 10
    assert "50 examples" in mixed_event[0]["message"]
    run_until(live.runtime, job["id"], {"running", "succeeded"})
    backend = live.runtime.registry.get("scripted")
    assert isinstance(backend, ScriptedBackend)
    state = json.loads((backend.state_dir / f"scr-{job['id']}.json").read_text())
    assert state["training_lines"] == 60  # the backend was handed the mix, not the task set


@pytest.mark.parametrize("size", [7, 13, 33])
def test_default_fraction_is_a_fifth_of_the_task_set(live: LiveApi, size: int) -> None:
    with live.client() as http:
        task = _upload(http, f"t{size}", size)
        response = _start(http, task["id"], {"dataset_id": BUILTIN_GENERAL})
    assert response.status_code == 201, response.text
    record = response.json()["options"]["general_mix"]
    assert record["general_examples"] == round(0.2 * size)
    assert record["fraction"] == 0.2 and record["general_dataset_id"] == BUILTIN_GENERAL


def test_bad_mix_requests_are_refused_and_start_nothing(live: LiveApi) -> None:
    with live.client() as http:
        task = _upload(http, "task", 20)
        text = http.post("/api/datasets", content=b'{"text": "plain"}\n' * 3).json()
        answers = {
            "zero": _start(http, task["id"], {"dataset_id": BUILTIN_GENERAL, "fraction": 0}),
            "over": _start(http, task["id"], {"dataset_id": BUILTIN_GENERAL, "fraction": 1.5}),
            "text": _start(http, task["id"], {"dataset_id": BUILTIN_GENERAL, "fraction": "x"}),
            "extra": _start(http, task["id"], {"dataset_id": BUILTIN_GENERAL, "share": 0.2}),
            "unknown": _start(http, task["id"], {"dataset_id": "ds_nope"}),
            "format": _start(http, task["id"], {"dataset_id": text["id"]}),
        }
        listed = http.get("/api/jobs").json()["data"]
    for name in ("zero", "over", "text", "extra"):
        assert answers[name].status_code == 422, name
        assert answers[name].json()["error"]["code"] == "invalid_request"
        assert any(p["field"].startswith("general_mix")
                   for p in answers[name].json()["error"]["problems"])
    assert answers["unknown"].status_code == 404
    assert answers["unknown"].json()["error"]["code"] == "dataset_not_found"
    assert answers["format"].status_code == 422
    assert answers["format"].json()["error"]["code"] == "general_mix_format_mismatch"
    assert listed == []


@pytest.mark.parametrize(("option", "dataset", "fraction"), [
    ("builtin:general:0.5", BUILTIN_GENERAL, 0.5), ("builtin:general", BUILTIN_GENERAL, 0.2)])
def test_cli_start_with_general_mix(live: LiveApi, option: str, dataset: str,
                                    fraction: float) -> None:
    from typer.testing import CliRunner

    from tunebridge.cli_jobs import jobs_app

    with live.client() as http:
        task = _upload(http, "cli", 30)
    result = CliRunner().invoke(jobs_app, [
        "start", "--dataset", task["id"], "--model", "tiny", "--backend", "scripted",
        "--general-mix", option, "--mix-seed", "3", "--api-url", live.url,
        "--api-key", live.admin_key, "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)["options"]["general_mix"]
    assert (record["general_dataset_id"], record["fraction"], record["seed"]) == (
        dataset, fraction, 3)
    assert record["general_examples"] == round(fraction * 30)


def test_general_mix_as_a_job_option(live: LiveApi) -> None:
    with live.client() as http:
        task = _upload(http, "opt", 40)
        body = {"training_dataset_id": task["id"], "base_model": "tiny", "backend": "scripted"}
        good = http.post("/api/jobs", json=body | {"options": {"general_mix": {
            "dataset_id": BUILTIN_GENERAL, "fraction": 0.25, "seed": 1}}})
        bad = http.post("/api/jobs", json=body | {"options": {"general_mix": {
            "dataset_id": BUILTIN_GENERAL, "fraction": -1}}})
    assert good.status_code == 201, good.text
    assert good.json()["options"]["general_mix"]["general_examples"] == 10
    assert bad.status_code == 422
    assert bad.json()["error"]["problems"][0]["field"] == "options.general_mix"
