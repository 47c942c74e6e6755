"""Local-trainer jobs on a real Ray head (Ray Jobs API), end to end.

The gateway is a real `tunebridge serve` with TUNEBRIDGE_LOCAL_EXECUTOR=ray; jobs go in over
HTTP, the scheduler submits them to Ray, Ray runs the real trainer on the tiny model, and the
metrics land in the database. The head restart runs last: it takes every Ray job down.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backends.base import BackendError, RemoteStatus
from backends.local.ray_executor import RayConfig
from backends.local.runs import RunDir, RunState, read_json
from tests.local.conftest import Observed, make_backend, poll_once, poll_until, sft_spec
from tests.ray.conftest import ray_client
from tests.ray.gateway import RayGateway, wait_for
from tests.ray.head import RayHead

pytestmark = pytest.mark.slow


def test_gateway_runs_a_job_on_ray_and_cancels_another(
    ray_head: RayHead, tiny_model: Path, facts_files: tuple[Path, Path], tmp_path: Path,
) -> None:
    with RayGateway(ray_head, tiny_model, facts_files[0], tmp_path) as gateway:
        done_id = gateway.start(6, {"num_gpus": 0})
        # Two data-parallel CPU processes: the entrypoint is the launcher, and Ray's stop_job
        # (SIGTERM to it) must still end in a saved adapter.
        cancel_id = gateway.start(400, {"num_gpus": 0, "num_processes": 2})
        wait_for(lambda: len(gateway.get(cancel_id, "/metrics")["data"]) >= 2, 240,
                 "metrics of the job to cancel")
        gateway.cancel(cancel_id)
        wait_for(lambda: [gateway.get(j)["status"] for j in (done_id, cancel_id)]
                 == ["succeeded", "cancelled"], 240, "both jobs settled")
        done, cancelled = (gateway.get(j) for j in (done_id, cancel_id))
        done_metrics = gateway.get(done_id, "/metrics")["data"]
        events = gateway.get(done_id, "/events")["data"]

    assert [m["step"] for m in done_metrics] == list(range(1, 7))
    assert all(m["train_loss"] is not None for m in done_metrics)
    assert Path(done["result"]["adapter_path"], "adapter_config.json").exists()
    assert any(f"submitted to Ray as job {done_id}" in e["message"] for e in events), events
    assert Path(cancelled["result"]["adapter_path"], "adapter_config.json").exists()
    assert cancelled["result"]["reason"].startswith("cancelled after step")
    assert cancelled["result"]["world_size"] == 2

    ray = ray_client(ray_head)
    # Ray records the end once the process has exited: a moment after the trainer's last word.
    finished, stopped = (
        wait_for(lambda j=j: (i := ray.get_job_info(j)).status.is_terminal() and i, 60,
                 f"Ray's record of {j}") for j in (done_id, cancel_id))
    assert (str(finished.status), str(stopped.status)) == ("SUCCEEDED", "STOPPED")
    assert finished.metadata["tunebridge_job_id"] == done_id
    assert "backends.local.train --run-dir" in finished.entrypoint
    assert "backends.local.launch --nproc-per-node 2 --run-dir" in stopped.entrypoint
    assert finished.runtime_env["env_vars"]["RAY_JOB_STOP_WAIT_TIME_S"] == "60"
    ours = [j for j in ray.list_jobs() if j.submission_id in (done_id, cancel_id)]
    assert len(ours) == 2, "a job was submitted to Ray twice"


def test_the_job_server_refuses_requests_without_our_token(
    ray_head: RayHead, tmp_path: Path,
) -> None:
    from ray.exceptions import AuthenticationError

    with pytest.raises(AuthenticationError):
        ray_client(ray_head, token="not-the-token").list_jobs()
    train = tmp_path / "train.jsonl"
    train.write_text('{"messages": []}\n')
    backend = make_backend(tmp_path, ray=RayConfig(ray_head.address, token="not-the-token"))
    spec = sft_spec("job_wrong_token", Path("someorg/some-model"), train)  # a hub id: no files
    with pytest.raises(BackendError) as refused:
        asyncio.run(backend.submit(spec))
    assert refused.value.is_configuration and refused.value.retryable
    assert "TUNEBRIDGE_RAY_DASHBOARD_TOKEN" in str(refused.value)
    assert "not-the-token" not in str(refused.value)
    run = RunDir(backend.runs_dir / next(p.name for p in backend.runs_dir.glob("local-*")))
    assert run.read_status().state is RunState.QUEUED  # type: ignore[union-attr]  # retried later


def test_lost_submission_is_adopted_and_a_job_ray_forgot_fails(
    ray_head: RayHead, tiny_model: Path, facts_files: tuple[Path, Path], tmp_path: Path,
) -> None:
    """Runs last: restarting the head takes every Ray job down, as a real head crash does."""
    config = RayConfig(ray_head.address, token=ray_head.token, stop_wait_s=30, gpus_per_job=0)
    backend = make_backend(tmp_path, ray=config)
    handle = asyncio.run(backend.submit(sft_spec("job_adopted", tiny_model, facts_files[0],
                                                 max_steps=400)))
    run = RunDir(Path(handle.state["run_dir"]))
    assert read_json(run.launch_file)["submission_id"] == "job_adopted"
    # The gateway died after Ray accepted the job and before it recorded that: the next poll
    # submits again under the same submission id, and adopts the job Ray already has.
    run.launch_file.unlink()
    backend.queue.release(run.run_id)
    seen = Observed()
    poll_once(backend, handle, seen)
    assert any(e.data.get("adopted") for e in seen.events), seen.event_ids()
    assert [j.submission_id for j in ray_client(ray_head).list_jobs()].count("job_adopted") == 1

    poll_until(backend, handle, seen, done=lambda s: len(s.metrics) >= 1, timeout=240)
    assert seen.final.status is RemoteStatus.RUNNING
    ray_head.restart()
    poll_until(backend, handle, seen, timeout=60)
    assert seen.final.status is RemoteStatus.FAILED
    message = (seen.final.error or {})["message"]
    assert "Ray no longer knows job job_adopted" in message and "restarted" in message
    assert run.stop_requested()
