"""Submitting: uploads (single and multi-part), the create payload, and crash-safe adoption."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from openai_support import BackendFactory, sft_spec, write_jsonl

from backends.base import Backend, BackendError
from backends.registry import BackendRegistry
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.anyio

JOBS = r"/v1/fine_tuning/jobs"


async def test_small_file_is_uploaded_in_one_request_and_job_created(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    handle = await make_backend().submit(sft_spec(train_file))

    uploads = fake.requests_to("POST", r"/v1/files")
    assert len(uploads) == 1 and not fake.requests_to("POST", r"/v1/uploads.*")
    assert b'name="purpose"\r\n\r\nfine-tune' in uploads[0].body
    [create] = fake.requests_to("POST", JOBS)
    body = create.json()
    assert body["model"] == "gpt-4o-mini-2024-07-18"
    assert body["method"] == {
        "type": "supervised",
        "supervised": {
            "hyperparameters": {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 1.0}
        },
    }
    assert body["metadata"] == {"tunebridge_job_id": "tb-job-1", "created_by": "tunebridge"}
    assert (body["suffix"], body["seed"]) == ("support-bot", 7)
    assert "validation_file" not in body
    stored = fake.world.contents[body["training_file"]]
    assert stored == train_file.read_bytes()
    assert handle.external_id in fake.world.jobs
    assert handle.state["training_file"] == body["training_file"]
    assert handle.state["adopted"] is False
    assert all(r.headers["authorization"] == "Bearer sk-fake-test" for r in fake.requests)


async def test_large_file_goes_through_the_uploads_api_in_parts(
    fake: FakeOpenAI, make_backend: BackendFactory, tmp_path: Path
) -> None:
    big = write_jsonl(tmp_path / "big.jsonl", 60)  # ~6 KB > the 4 KB single-request limit
    size = big.stat().st_size

    handle = await make_backend().submit(sft_spec(big))

    assert not fake.requests_to("POST", r"/v1/files")
    [created] = fake.requests_to("POST", r"/v1/uploads")
    assert created.json()["bytes"] == size
    assert created.json()["purpose"] == "fine-tune"
    assert created.json()["mime_type"] == "text/jsonl"
    parts = fake.requests_to("POST", r"/v1/uploads/\w+/parts")
    assert len(parts) == -(-size // 1000)  # ceil: 1000-byte parts
    [complete] = fake.requests_to("POST", r"/v1/uploads/\w+/complete")
    assert complete.json()["md5"] == hashlib.md5(big.read_bytes()).hexdigest()
    file_id = fake.world.jobs[handle.external_id].obj["training_file"]
    assert fake.world.contents[file_id] == big.read_bytes()


async def test_dpo_with_validation_file_maps_method_and_beta(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path, tmp_path: Path
) -> None:
    valid = write_jsonl(tmp_path / "valid.jsonl", 2)
    spec = sft_spec(
        train_file,
        method="dpo",
        validation_file=valid,
        hyperparameters={"n_epochs": 1, "beta": 0.1, "lora_r": 16, "batch_size": None},
        suffix=None,
        seed=None,
    )

    await make_backend().submit(spec)

    body = fake.requests_to("POST", JOBS)[0].json()
    expected = {"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 1, "beta": 0.1}}}
    assert body["method"] == expected
    assert fake.world.contents[body["validation_file"]] == valid.read_bytes()
    assert "suffix" not in body and "seed" not in body


async def test_resubmit_after_crash_adopts_the_job_instead_of_creating_another(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    first = await make_backend().submit(sft_spec(train_file))
    # The process dies before committing `first`; a new process submits the same tunebridge job.
    again = await make_backend().submit(sft_spec(train_file))

    assert again.external_id == first.external_id
    assert again.state["adopted"] is True
    assert len(fake.world.jobs) == 1
    assert len(fake.requests_to("POST", JOBS)) == 1
    assert len(fake.requests_to("POST", r"/v1/files")) == 1  # not uploaded twice either


async def test_lost_create_response_is_retryable_and_then_adopted(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    backend = make_backend()
    fake.drop_next(method="POST", path=JOBS, processed=True)

    with pytest.raises(BackendError) as lost:
        await backend.submit(sft_spec(train_file))
    assert lost.value.retryable
    assert len(fake.world.jobs) == 1  # the provider did create it

    handle = await backend.submit(sft_spec(train_file))
    assert handle.external_id in fake.world.jobs
    assert len(fake.world.jobs) == 1
    assert len(fake.requests_to("POST", JOBS)) == 1


async def test_crash_after_upload_reuses_the_uploaded_file(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    fake.fail_next(1, 500, method="POST", path=JOBS)
    with pytest.raises(BackendError):
        await make_backend().submit(sft_spec(train_file))

    await make_backend().submit(sft_spec(train_file))

    assert len(fake.requests_to("POST", r"/v1/files")) == 1
    assert len(fake.world.jobs) == 1


async def test_other_jobs_metadata_is_not_adopted(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    backend = make_backend()
    one = await backend.submit(sft_spec(train_file, job_id="tb-a"))
    two = await backend.submit(sft_spec(train_file, job_id="tb-b"))

    assert one.external_id != two.external_id
    assert len(fake.world.jobs) == 2


async def test_unsupported_method_or_missing_file_fails_without_uploading(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path, tmp_path: Path
) -> None:
    backend = make_backend()
    with pytest.raises(BackendError) as bad_method:
        await backend.submit(sft_spec(train_file, method="grpo"))
    with pytest.raises(BackendError) as missing:
        await backend.submit(sft_spec(tmp_path / "nope.jsonl", job_id="tb-2"))

    assert not bad_method.value.retryable and "grpo" in str(bad_method.value)
    assert not missing.value.retryable
    assert not fake.requests_to("POST", r"/v1/.*")


async def test_provider_rejection_of_the_request_is_not_retryable(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    spec = sft_spec(train_file, hyperparameters={"learning_rate_multiplier": 50})

    with pytest.raises(BackendError) as rejected:
        await make_backend().submit(spec)

    assert not rejected.value.retryable
    assert "400" in str(rejected.value) and "learning_rate_multiplier" in str(rejected.value)


async def test_is_a_backend_the_registry_can_hold(make_backend: BackendFactory) -> None:
    backend = make_backend()

    assert isinstance(backend, Backend)
    assert BackendRegistry([backend]).get("openai") is backend
