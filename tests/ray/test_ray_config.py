"""The Ray executor's choices that need no Ray head: settings → config, the lazy import, the
entrypoint, the verdict for a job that ended without a final status, and the GPU option."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from backends.base import BackendError
from backends.local import LocalBackend
from backends.local.ray_executor import (
    RayConfig,
    RayExecutor,
    RayStatus,
    ended_without_status,
    trainer_entrypoint,
)
from backends.local.runs import RunState
from tests.local.conftest import sft_spec
from tunebridge.runtime import default_backends, ray_config
from tunebridge.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **values)  # type: ignore[arg-type, call-arg]


def test_settings_select_the_ray_executor(tmp_path: Path) -> None:
    assert ray_config(settings(tmp_path)) is None
    with pytest.raises(ValueError, match="TUNEBRIDGE_RAY_ADDRESS"):
        ray_config(settings(tmp_path, local_executor="ray"))
    config = ray_config(settings(tmp_path, local_executor="ray",
                                 ray_address="http://head:8265/", ray_dashboard_token="s3cret",
                                 ray_job_stop_wait_s=300, ray_gpus_per_job=0))
    assert config == RayConfig("http://head:8265", token="s3cret", stop_wait_s=300,
                               gpus_per_job=0)
    assert "s3cret" not in repr(config)
    local = [b for b in default_backends(settings(tmp_path, local_executor="ray",
                                                  ray_address="http://head:8265"))
             if isinstance(b, LocalBackend)]
    assert isinstance(local[0].executor, RayExecutor)
    with pytest.raises(ValueError):
        settings(tmp_path, local_executor="kubernetes")


def test_a_gateway_imports_ray_only_when_it_talks_to_ray(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from tunebridge.runtime import default_backends\n"
        "from tunebridge.settings import Settings\n"
        f"for executor in ('subprocess', 'ray'):\n"
        f"    default_backends(Settings(_env_file=None, data_dir={str(tmp_path)!r},\n"
        "        local_executor=executor, ray_address='http://127.0.0.1:9'))\n"
        "print('ray' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert out.strip() == "False"


def test_entrypoint_is_the_local_trainer_and_quotes_paths() -> None:
    command = trainer_entrypoint("python", Path("/shared/runs/a b;rm -rf x"))
    assert command == "python -m backends.local.train --run-dir '/shared/runs/a b;rm -rf x'"
    command = trainer_entrypoint("python", Path("/shared/runs/a b"), processes=2)
    assert command == ("python -m backends.local.launch --nproc-per-node 2 "
                       "--run-dir '/shared/runs/a b'")


@pytest.mark.parametrize(("status", "stop", "state", "words"), [
    (RayStatus.STOPPED, True, RunState.CANCELLED, "RAY_JOB_STOP_WAIT_TIME_S=90s"),
    (RayStatus.STOPPED, False, RunState.FAILED, "stopped outside tunebridge"),
    (RayStatus.SUCCEEDED, False, RunState.FAILED, "shared by the gateway and the Ray workers"),
    (RayStatus.FAILED, False, RunState.FAILED, "failed: ...boom"),
])
def test_a_ray_job_that_ended_without_a_final_status(
    status: RayStatus, stop: bool, state: RunState, words: str,
) -> None:
    verdict = ended_without_status(status, stop, "job_1", Path("/runs/x"), "x" * 5000 + "boom",
                                   90)
    assert verdict[0] is state
    assert words.removeprefix("failed: ...") in verdict[1]
    assert len(verdict[1]) < 1700


def test_ray_statuses_cover_rays_own_enum() -> None:
    from ray.job_submission import JobStatus

    assert {s.value for s in RayStatus} == {str(s) for s in JobStatus}
    assert {s for s in RayStatus if s.terminal} == {
        RayStatus(str(s)) for s in JobStatus if s.is_terminal()}


def test_gpu_options_are_checked_at_submit(tmp_path: Path) -> None:
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"messages": []}) + "\n")
    backend = LocalBackend(tmp_path / "runs", tmp_path / "models", slots=["cpu"])
    for gpus, words in ((True, "whole number"), ("1", "whole number"), (-1, "whole number"),
                        (2, "this host has no GPU")):
        spec = sft_spec(f"job_{gpus}", Path("someorg/some-model"), train,
                        options={"num_gpus": gpus})
        with pytest.raises(BackendError, match=words) as refused:
            asyncio.run(backend.submit(spec))
        assert not refused.value.retryable


def test_logs_stay_clean_once_ray_is_imported() -> None:
    import logging

    import ray.job_submission  # noqa: F401  (installs Ray's log record factory)

    from tunebridge.log import JsonFormatter

    record = logging.getLogRecordFactory()("x", logging.INFO, __file__, 1, "hello", (), None)
    assert hasattr(record, "_ray_timestamp_ns")
    entry = json.loads(JsonFormatter(()).format(record))
    assert entry["event"] == "hello" and not [k for k in entry if k.startswith("_")]
