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
from backends.local.distributed import Parallelism, ParallelismError, World, parallelism
from backends.local.ray_executor import (
    RayConfig,
    RayExecutor,
    RayStatus,
    ended_without_status,
    trainer_entrypoint,
)
from backends.local.ray_train import scaling
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


# -- multi-node jobs (Ray Train) ------------------------------------------------------------

class RecordingJobClient:
    """Stands in for Ray's JobSubmissionClient: records what would be submitted."""

    def __init__(self) -> None:
        self.submitted: list[dict[str, object]] = []

    def submit_job(self, **request: object) -> str:
        self.submitted.append(request)
        return str(request["submission_id"])


def test_num_nodes_is_validated_and_only_the_ray_executor_takes_it(tmp_path: Path) -> None:
    assert parallelism({"num_gpus": 0, "num_nodes": 2}, multi_node=True) == Parallelism(2, 0, 2)
    eight = parallelism({"num_gpus": 8, "num_nodes": 2}, multi_node=True)
    assert (eight.processes, eight.per_node) == (8, 4)
    for bad, words in [({"num_nodes": 2}, "needs num_gpus"),
                       ({"num_gpus": 1, "num_nodes": 2}, "spread evenly"),
                       ({"num_gpus": 3, "num_nodes": 2}, "spread evenly"),
                       ({"num_gpus": 0, "num_processes": 3, "num_nodes": 2}, "spread evenly")]:
        with pytest.raises(ParallelismError, match=words):
            parallelism(bad, multi_node=True)
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"messages": []}) + "\n")
    here = LocalBackend(tmp_path / "runs", tmp_path / "models", slots=["cpu"])
    spec = sft_spec("job_two_nodes", Path("someorg/some-model"), train,
                    options={"num_gpus": 0, "num_nodes": 2})
    with pytest.raises(BackendError, match="needs TUNEBRIDGE_LOCAL_EXECUTOR=ray"):
        asyncio.run(here.submit(spec))


def test_a_multi_node_job_is_a_ray_train_driver_that_reserves_no_gpu(tmp_path: Path) -> None:
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"messages": []}) + "\n")
    backend = LocalBackend(tmp_path / "runs", tmp_path / "models",
                           ray=RayConfig("http://head:8265"))
    client = RecordingJobClient()
    backend.executor._client = client  # type: ignore[attr-defined]
    for job, gpus in (("job_spread", 2), ("job_pack", 8)):
        asyncio.run(backend.submit(sft_spec(job, Path("someorg/some-model"), train,
                                            options={"num_gpus": gpus, "num_nodes": 2})))
    spread, pack = client.submitted
    assert spread["entrypoint_num_gpus"] == pack["entrypoint_num_gpus"] == 0
    assert str(spread["entrypoint"]).startswith("python -m backends.local.ray_train --run-dir ")
    assert str(spread["entrypoint"]).endswith(
        "--num-workers 2 --gpus-per-worker 1 --placement STRICT_SPREAD")
    assert str(pack["entrypoint"]).endswith(
        "--num-workers 8 --gpus-per-worker 1 --placement PACK")
    assert "CUDA_VISIBLE_DEVICES" not in pack["runtime_env"]["env_vars"]  # type: ignore[index]

    from ray.train.v2.api.config import ScalingConfig

    config = ScalingConfig(**scaling(8, 1, "PACK"))  # Ray's own checks accept what we ask
    assert (config.num_workers, config.use_gpu, config.resources_per_worker) == (
        8, True, {"CPU": 1.0, "GPU": 1.0})
    assert scaling(2, 0, "STRICT_SPREAD")["resources_per_worker"] == {"CPU": 1.0}


def test_a_ray_train_worker_follows_the_gpu_ray_gave_it() -> None:
    env = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"}
    assert World.from_env({**env, "ACCELERATE_TORCH_DEVICE": "cuda:2"}).cuda_index == 2
    assert World.from_env({**env, "ACCELERATE_TORCH_DEVICE": "cpu"}).cuda_index == 1
    assert World.from_env(env).cuda_index == 1  # torchrun: the local rank


def test_a_job_server_that_never_answers_is_unavailable_not_a_hang(tmp_path: Path) -> None:
    """Ray's own client waits forever; ours gives up after its timeout and the poll retries
    later, the job untouched."""
    import socket
    import time

    from backends.local.ray_errors import RayUnavailable

    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"http://127.0.0.1:{silent.getsockname()[1]}"
        config = RayConfig(address, request_timeout_s=(1.0, 1.0))
        backend = LocalBackend(tmp_path / "runs", tmp_path / "models", slots=["cpu"],
                               ray=config)
        train = tmp_path / "train.jsonl"
        train.write_text('{"messages": []}\n')
        started = time.monotonic()
        with pytest.raises(RayUnavailable) as unavailable:
            asyncio.run(backend.submit(sft_spec("job_silent", Path("org/model"), train)))
        assert time.monotonic() - started < 15
    assert unavailable.value.retryable and not unavailable.value.is_configuration
    assert "unreachable" in str(unavailable.value)
