"""The unchanged OpenAI SDK against our `/v1`: only `base_url` and the key differ."""

from __future__ import annotations

import io

import openai
import pytest

from tests.conftest import LiveApi, chat_line, jsonl, run_until


def _client(live: LiveApi, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key=key or live.admin_key,
                         max_retries=0)


def test_sdk_upload_create_wait_events_cancel(live: LiveApi, chat_jsonl: bytes) -> None:
    live.runtime.settings.openai_compat_models = {"tiny": "scripted"}
    client = _client(live)
    uploaded = client.files.create(file=("train.jsonl", io.BytesIO(chat_jsonl)),
                                   purpose="fine-tune")
    assert uploaded.id.startswith("ds_") and uploaded.bytes == len(chat_jsonl)
    assert client.files.retrieve(uploaded.id).filename == "train.jsonl"

    job = client.fine_tuning.jobs.create(
        model="tiny", training_file=uploaded.id,
        hyperparameters={"n_epochs": 2, "learning_rate_multiplier": 0.5},
        extra_body={"suffix": "demo"})
    assert job.status == "queued"
    assert run_until(live.runtime, job.id, {"succeeded"}) == "succeeded"
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded" and done.finished_at is not None
    with live.client() as http:  # the multiplier scaled the seed's 2e-4 learning rate
        assert http.get(f"/api/jobs/{job.id}").json()["hyperparameters"]["learning_rate"] == 1e-4

    first = client.fine_tuning.jobs.list_events(job.id, limit=2)
    assert len(first.data) == 2 and first.has_more
    everything = list(client.fine_tuning.jobs.list_events(job.id, limit=2))
    ids = [int(e.id.removeprefix("ftevent-")) for e in everything]
    assert len(ids) > 2, "the SDK should have paged past the first page"
    assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids))
    assert everything[0].message.endswith("succeeded.")

    listed = [j.id for j in client.fine_tuning.jobs.list(limit=1)]
    assert listed == [job.id]

    long_job = client.fine_tuning.jobs.create(
        model="tiny", training_file=uploaded.id, extra_body={})
    cancelled = client.fine_tuning.jobs.cancel(long_job.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(openai.ConflictError) as refused:
        client.fine_tuning.jobs.cancel(long_job.id)
    assert refused.value.code == "illegal_transition"


def test_errors_come_back_in_openai_shape(live: LiveApi) -> None:
    client = _client(live)
    bad = jsonl([chat_line("q", "a")]) + b"{not json\n"
    with pytest.raises(openai.UnprocessableEntityError) as invalid:
        client.files.create(file=("bad.jsonl", io.BytesIO(bad)), purpose="fine-tune")
    assert invalid.value.code == "invalid_dataset"
    assert "line 2" in invalid.value.message
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("job_missing")
    with pytest.raises(openai.AuthenticationError):
        _client(live, key="tb_wrong").fine_tuning.jobs.list()
    with pytest.raises(openai.PermissionDeniedError):
        _client(live, key=live.key("read")).fine_tuning.jobs.create(
            model="tiny", training_file="ds_x")
