"""Data-parallel jobs on CPU: two real trainer processes under torch's launcher (gloo), driven
only through LocalBackend's submit/poll/cancel, as the scheduler does.

What a 2-GPU job does differently (NCCL, one GPU per rank, QLoRA on each) cannot run here; the
choices that lead to it (options, slots, commands, engine) are checked without a GPU below.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest

from backends.base import BackendError, Handle, RemoteStatus
from backends.local import LocalBackend
from backends.local.distributed import Parallelism, ParallelismError, World, parallelism
from backends.local.engine import QLORA, EngineError, choose_path
from backends.local.launch import failure_reason
from backends.local.process import ProcessRef, is_alive, launcher_command
from backends.local.ray_executor import trainer_entrypoint
from backends.local.trainers import per_device_batch
from tests.local.conftest import Observed, make_backend, poll_once, poll_until, sft_spec

TWO_CPU_RANKS = {"num_gpus": 0, "num_processes": 2}


def launcher_pid(handle: Handle) -> int:
    launch = json.loads((Path(handle.state["run_dir"]) / "launch.json").read_text())
    return int(launch["pid"])


def rank_pids(launcher: int) -> dict[int, int]:
    """The launcher's trainer processes by rank (RANK in their environment), from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            if int(stat[stat.rindex(")") + 2:].split()[1]) != launcher:
                continue
            env = dict(item.split("=", 1) for item in
                       (entry / "environ").read_text().split("\0") if "=" in item)
        except (OSError, ValueError):
            continue
        if "RANK" in env:
            found[int(env["RANK"])] = int(entry.name)
    return found


def two_ranks_training(backend: LocalBackend, job_id: str, model: Path, train: Path
                       ) -> tuple[Handle, Observed, int, dict[int, int]]:
    """A long two-process run, polled until it has logged two steps: its handle, what the
    polls saw, the launcher's pid and the ranks' pids."""
    handle = asyncio.run(backend.submit(sft_spec(
        job_id, model, train, options=TWO_CPU_RANKS, max_steps=5000)))
    seen = poll_until(backend, handle, Observed(), done=lambda s: len(s.metrics) >= 2,
                      timeout=150)
    launcher = launcher_pid(handle)
    return handle, seen, launcher, rank_pids(launcher)


def assert_gone(pids: list[int], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [p for p in pids if is_alive(ProcessRef(p, None))]:
            return
        time.sleep(0.2)
    raise AssertionError(f"processes still alive: {pids}")


def train_steps(seen: Observed) -> list[int]:
    return [m.step for m in seen.metrics if m.train_loss is not None]


# -- pure choices -----------------------------------------------------------------------------

def test_parallelism_options_are_validated() -> None:
    assert parallelism({}) == Parallelism(1, 1)
    assert parallelism({"num_gpus": 4}) == Parallelism(4, 4)
    assert parallelism({"num_gpus": 2.0, "num_processes": 2, "num_nodes": 1}) == Parallelism(2, 2)
    assert parallelism(TWO_CPU_RANKS) == Parallelism(2, 0)
    assert parallelism({"num_gpus": 0}) == Parallelism(1, 0)
    for bad, words in [
        ({"num_nodes": 2}, "multi-node training is not supported"),
        ({"num_processes": 2}, "needs num_gpus"),
        ({"num_gpus": 1, "num_processes": 2}, "disagree"),
        ({"num_gpus": 2, "num_processes": 1}, "disagree"),
        ({"num_gpus": True}, "whole number"),
        ({"num_gpus": "2"}, "whole number"),
        ({"num_gpus": -1}, "whole number"),
        ({"num_processes": 0, "num_gpus": 0}, "whole number"),
    ]:
        with pytest.raises(ParallelismError, match=words):
            parallelism(bad)


def test_world_engine_batch_and_commands() -> None:
    assert World.from_env({"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}) == World(1, 1, 2)
    assert World.from_env({}).main and not World.from_env({}).distributed
    assert choose_path("auto", True, True, data_parallel=True) == QLORA
    with pytest.raises(EngineError, match="one GPU"):
        choose_path("unsloth", True, True, data_parallel=True)
    assert [per_device_batch(4, n) for n in (1, 2, 3, 8)] == [4, 2, 2, 1]
    assert launcher_command("py", Path("/r"), 2) == [
        "py", "-m", "backends.local.launch", "--nproc-per-node", "2", "--run-dir", "/r"]
    assert trainer_entrypoint("python", Path("/runs/a b"), 4) == (
        "python -m backends.local.launch --nproc-per-node 4 --run-dir '/runs/a b'")
    assert trainer_entrypoint("python", Path("/r")) == "python -m backends.local.train --run-dir /r"


def test_failure_reason_blames_the_rank_that_failed_first() -> None:
    broken = {"at": 10.0, "reason": "trainer crashed: DistBackendError: Connection closed by peer",
              "collective": True}
    assert failure_reason({0: 1, 1: -9}, {0: {**broken, "rank": 0}}, 2).startswith(
        "rank 1 of 2 failed first: killed by SIGKILL")
    oom = {"rank": 1, "at": 12.0, "reason": "trainer crashed: OutOfMemoryError: CUDA",
           "collective": False}
    reason = failure_reason({0: -9, 1: 1}, {1: oom}, 2)
    assert reason.startswith("rank 1 of 2 failed first: trainer crashed: OutOfMemoryError")
    assert "rank 0: killed by SIGKILL" in reason
    assert failure_reason({0: -15, 1: 1}, {}, 2).startswith("rank 1 of 2 failed first: exit code 1")


def test_multi_gpu_jobs_take_that_many_gpu_slots_or_are_refused(tmp_path: Path) -> None:
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"messages": []}) + "\n")
    cpu_host = LocalBackend(tmp_path / "runs", tmp_path / "models", slots=["cpu"])
    gpu_host = LocalBackend(tmp_path / "runs2", tmp_path / "models", slots=["0", "1"])
    for backend, options, words in [
        (cpu_host, {"num_gpus": 2}, "this host has no GPU"),
        (gpu_host, {"num_gpus": 3}, "this host has 2 GPU slots"),
        (gpu_host, {"num_nodes": 2}, "multi-node"),
        (gpu_host, {"num_gpus": 2, "engine": "unsloth"}, "unsloth"),
    ]:
        with pytest.raises(BackendError, match=words) as refused:
            asyncio.run(backend.submit(sft_spec("job", Path("org/model"), train,
                                                options=options)))
        assert not refused.value.retryable
    executor = gpu_host.executor
    assert executor.slots_needed(parallelism({"num_gpus": 2})) == 2  # type: ignore[attr-defined]
    assert executor.slots_needed(parallelism(TWO_CPU_RANKS)) == 1  # type: ignore[attr-defined]
    assert executor._env("0,1")["CUDA_VISIBLE_DEVICES"] == "0,1"  # type: ignore[attr-defined]
    assert executor._env("1", cpu_only=True)["CUDA_VISIBLE_DEVICES"] == ""  # type: ignore[attr-defined]
    with gpu_host.queue.locked():
        gpu_host.queue.activate("two-gpu-job", ["0", "1"])
        assert gpu_host.queue.free_slots() == []
        gpu_host.queue.release("two-gpu-job")
        assert gpu_host.queue.free_slots() == ["0", "1"]


def test_a_queued_multi_node_job_fails_on_a_host_executor_instead_of_running_as_one(
        tmp_path: Path) -> None:
    """A gateway switched from the Ray executor to subprocesses with a num_nodes 2 job still
    queued: the job fails with the reason; it never starts as a single process."""
    from backends.local.runs import RunDir, RunState, write_json_atomic

    host = make_backend(tmp_path)
    run = RunDir(host.runs_dir / "job-multi")
    run.path.mkdir(parents=True)
    write_json_atomic(run.spec, {"job_id": "job-multi", "options": {
        "num_gpus": 0, "num_processes": 2, "num_nodes": 2}})
    run.write_status(RunState.QUEUED)
    with host.queue.locked():
        host.queue.enqueue(run.run_id, seq=1)
    host.executor.pump()
    status = run.read_status()
    assert status is not None and status.state is RunState.FAILED
    assert "TUNEBRIDGE_LOCAL_EXECUTOR=ray" in (status.reason or "")
    assert not run.launch_file.exists() and host.queue.waiting() == []


# -- real two-process runs --------------------------------------------------------------------

@pytest.mark.slow
def test_two_cpu_processes_train_one_adapter_with_metrics_once_per_step(
    tmp_path: Path, tiny_model: Path, facts_files: tuple[Path, Path],
) -> None:
    backend = make_backend(tmp_path)
    spec = sft_spec("job-dp", tiny_model, facts_files[0], facts_files[1], options=TWO_CPU_RANKS,
                    max_steps=6, eval_steps=3)
    handle = asyncio.run(backend.submit(spec))
    seen = poll_until(backend, handle, Observed(), timeout=150)
    assert seen.final.status is RemoteStatus.SUCCEEDED, seen.final.error
    result = seen.final.result or {}
    assert result["world_size"] == 2 and result["distributed_backend"] == "gloo"
    assert [r["global_step"] for r in result["ranks"]] == [6, 6]
    assert train_steps(seen) == [1, 2, 3, 4, 5, 6]  # once per step, not once per rank
    assert [m.step for m in seen.metrics if m.eval_loss is not None] == [3, 6]
    run_dir = Path(handle.state["run_dir"])
    assert sorted(p.name for p in run_dir.rglob("adapter_model.safetensors")
                  if "checkpoint-" not in str(p)) == ["adapter_model.safetensors"]
    assert Path(result["adapter_path"], "adapter_model.safetensors").is_file()
    ids = seen.event_ids()
    assert len(ids) == len(set(ids)) and ids.count("adapter-saved") == 1
    assert "2 trainer processes (CPU, gloo)" in next(
        e.message for e in seen.events if e.event_id.endswith(":launched"))
    assert not list(run_dir.glob("rank-*.failure.json"))
    assert "error" not in result["memorization"]  # rank 0 probes the unwrapped model


@pytest.mark.slow
def test_a_non_finite_loss_ends_every_rank_at_the_same_step(
    tmp_path: Path, tiny_model: Path, facts_files: tuple[Path, Path],
) -> None:
    """The logged loss and grad norm are averaged over the ranks, so all of them see the NaN at
    the same step and leave together: no rank is left waiting in an all-reduce."""
    backend = make_backend(tmp_path)
    spec = sft_spec("job-dp-nan", tiny_model, facts_files[0], options=TWO_CPU_RANKS,
                    learning_rate=1e4, warmup_ratio=0, n_epochs=5)
    seen = poll_until(backend, asyncio.run(backend.submit(spec)), Observed(), timeout=150)
    assert seen.final.status is RemoteStatus.FAILED
    assert "became nan" in (seen.final.error or {})["message"]
    result = seen.final.result or {}
    assert len({r["global_step"] for r in result["ranks"]}) == 1
    assert result["global_step"] < result["max_steps"]


@pytest.mark.slow
def test_cancelling_two_processes_stops_both_at_one_step_and_saves(
    tmp_path: Path, tiny_model: Path, facts_files: tuple[Path, Path],
) -> None:
    backend = make_backend(tmp_path, kill_after_s=60.0, term_after_s=30.0)
    handle, seen, launcher, ranks = two_ranks_training(
        backend, "job-dp-cancel", tiny_model, facts_files[0])
    assert sorted(ranks) == [0, 1]
    restarted = make_backend(tmp_path, kill_after_s=60.0, term_after_s=30.0)  # a new gateway
    asyncio.run(restarted.cancel(handle))
    poll_until(restarted, handle, seen, timeout=60)
    result = seen.final.result or {}
    assert seen.final.status is RemoteStatus.CANCELLED, seen.final.error
    assert result["stop_reason"].startswith("cancelled after step")
    stopped = {r["stopped_at"] for r in result["ranks"]}
    assert len(stopped) == 1 and stopped == {result["global_step"]}  # same step on both ranks
    assert Path(result["adapter_path"], "adapter_model.safetensors").is_file()
    assert "sigterm" not in seen.event_ids()  # the stop file alone stopped them: no escalation
    assert_gone([launcher, *ranks.values()])


@pytest.mark.slow
def test_sigterm_to_the_launcher_is_a_graceful_stop_for_every_rank(
    tmp_path: Path, tiny_model: Path, facts_files: tuple[Path, Path],
) -> None:
    """What Ray's stop_job and the executor's escalation send: SIGTERM to the launcher's group
    (the ranks run in sessions of their own, so only the launcher gets it)."""
    backend = make_backend(tmp_path)
    handle, seen, launcher, ranks = two_ranks_training(
        backend, "job-dp-term", tiny_model, facts_files[0])
    os.killpg(launcher, signal.SIGTERM)
    poll_until(backend, handle, seen, timeout=60)
    result = seen.final.result or {}
    assert seen.final.status is RemoteStatus.CANCELLED, seen.final.error
    assert len({r["stopped_at"] for r in result["ranks"]}) == 1
    assert Path(result["adapter_path"], "adapter_model.safetensors").is_file()
    stop = json.loads((Path(handle.state["run_dir"]) / "stop.json").read_text())
    assert "SIGTERM" in stop["reason"]
    assert_gone([launcher, *ranks.values()])


@pytest.mark.slow
def test_a_killed_launcher_takes_its_ranks_down(
    tmp_path: Path, tiny_model: Path, facts_files: tuple[Path, Path],
) -> None:
    """SIGKILL of the launcher's group (the last step of a cancel, a frozen heartbeat, the OOM
    killer) cannot reach the ranks directly: they die because their launcher died."""
    backend = make_backend(tmp_path)
    handle, seen, launcher, ranks = two_ranks_training(
        backend, "job-dp-sigkill", tiny_model, facts_files[0])
    os.killpg(launcher, signal.SIGKILL)
    assert_gone(list(ranks.values()), timeout=10)
    poll_until(backend, handle, seen, timeout=30)
    assert seen.final.status is RemoteStatus.FAILED
    reason = (seen.final.error or {})["message"]
    assert "data-parallel launcher" in reason and "killed by SIGKILL" in reason, reason


@pytest.mark.slow
def test_a_killed_rank_fails_the_job_with_that_rank_named(
    tmp_path: Path, tiny_model: Path, facts_files: tuple[Path, Path],
) -> None:
    backend = make_backend(tmp_path)
    handle, seen, launcher, ranks = two_ranks_training(
        backend, "job-dp-kill", tiny_model, facts_files[0])
    assert sorted(ranks) == [0, 1]
    os.kill(ranks[1], signal.SIGKILL)
    poll_until(backend, handle, seen, timeout=60)
    assert seen.final.status is RemoteStatus.FAILED
    reason = (seen.final.error or {})["message"]
    assert reason.startswith("rank 1 of 2 failed first: killed by SIGKILL"), reason
    assert seen.metrics, "metrics written before the crash must stay"
    assert_gone([launcher, *ranks.values()])
    assert poll_once(backend, handle, seen).status is RemoteStatus.FAILED
