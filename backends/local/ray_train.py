"""Multi-node data-parallel driver: `python -m backends.local.ray_train --run-dir DIR
--num-workers W --gpus-per-worker G --placement STRATEGY`.

The Ray executor makes this the Ray Job's entrypoint for a job with `num_nodes` > 1. It reserves
no GPU itself (`entrypoint_num_gpus` 0) and runs Ray Train's `TorchTrainer`: W workers, one per
GPU (or one per CPU process), placed by Ray over the cluster's nodes, each calling the trainer's
`run` for the run directory (backends.local.train). Before our code runs, Ray Train joins them
into one torch process group (gloo on CPU, NCCL on GPUs; `MASTER_ADDR`/`MASTER_PORT` from rank
0's node) and sets `RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`, `NODE_RANK` and
`ACCELERATE_TORCH_DEVICE`, so backends.local.distributed and transformers' Trainer (through
accelerate) use that group as they use torchrun's.

What else Ray Train offers is left out. The run directory on shared storage is the record:
RunConfig's storage is a subdirectory of it, where Ray Train only checks that every worker sees
the driver's files; nothing is checkpointed through Ray; no failure is retried (`max_failures`
0, no restart on preemption either): a rank that fails fails the job, with the reasons the ranks
left behind, as under backends.local.launch.

Like that launcher, this driver is what Ray's `stop_job` signals: SIGTERM becomes the run's stop
file, which every rank reads, so all ranks stop after the same step and rank 0 saves the adapter.
A stop while Ray is still placing the workers ends the job at once. Driver and workers share
fate: the workers are actors of Ray Train's controller, itself owned by this driver, so a
SIGKILLed driver takes them down.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from backends.local.distributed import (
    Parallelism,
    ParallelismError,
    is_collective_error,
    parallelism,
)
from backends.local.launch import MAX_RANK_REASON, settle_failed
from backends.local.runs import RunDir, RunState, write_json_atomic

STRICT_SPREAD = "STRICT_SPREAD"
PACK = "PACK"
PLACEMENTS = (STRICT_SPREAD, PACK, "SPREAD", "STRICT_PACK")


def placement(wanted: Parallelism) -> str:
    """One rank per node: STRICT_SPREAD, every rank on a node of its own. Several per node:
    PACK, since Ray Train cannot ask for exactly P workers per node; packing fills nodes with
    their free GPUs first, which is P per node on nodes with P free GPUs."""
    return STRICT_SPREAD if wanted.per_node == 1 else PACK


def job_parallelism(spec: dict[str, Any]) -> Parallelism:
    """A Ray run's parallelism, multi-node allowed (validated at submit; a bad old spec runs as
    one process)."""
    try:
        return parallelism(spec.get("options") or {}, multi_node=True)
    except ParallelismError:
        return Parallelism()


def describe(wanted: Parallelism) -> str:
    each = "on CPU" if wanted.on_cpu else "1 GPU each"
    return (f"Ray Train: {wanted.processes} workers over {wanted.nodes} nodes, "
            f"{placement(wanted)}, {each}")


def driver_command(python: str, run_dir: Path, wanted: Parallelism) -> list[str]:
    """The Ray Job entrypoint of a multi-node job."""
    return [python or sys.executable, "-m", "backends.local.ray_train", "--run-dir",
            str(run_dir), "--num-workers", str(wanted.processes),
            "--gpus-per-worker", "0" if wanted.on_cpu else "1",
            "--placement", placement(wanted)]


def scaling(workers: int, gpus_per_worker: float, strategy: str) -> dict[str, Any]:
    """ScalingConfig's arguments. Each worker reserves a Ray CPU (Ray Train's default), and its
    GPU; the driver reserves nothing."""
    resources: dict[str, float] = {"CPU": 1.0}
    if gpus_per_worker:
        resources["GPU"] = float(gpus_per_worker)
    return {"num_workers": workers, "use_gpu": bool(gpus_per_worker),
            "resources_per_worker": resources, "placement_strategy": strategy}


def train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: this rank's trainer. A rank that ends badly raises, so that Ray
    Train ends the others (they may be waiting for it in an all-reduce)."""
    from backends.local import train

    code = train.run(Path(config["run_dir"]))
    if code != 0:
        raise RuntimeError(f"rank {os.environ.get('RANK')} ended with exit code {code}")


class _StoppedWhilePlacing(Exception):
    """SIGTERM before any rank started: nothing to save, nothing to wait for."""


def fit(run: RunDir, workers: int, gpus_per_worker: float, strategy: str) -> dict[int, Any]:
    """Run the workers to their end. Returns the failed ranks' errors (empty on success)."""
    os.environ["RAY_TRAIN_V2_ENABLED"] = "1"  # the API used here; Ray 2.60's default
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # workers keep the job's directory
    # Ray Train's print patch also logs what libraries print into captured streams (dill's
    # disassembly, for datasets' fingerprints): hundreds of lines per job. Plain stdout is kept.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    import ray
    from ray.train import WorkerGroupError
    from ray.train.v2.api.config import FailureConfig, RunConfig, ScalingConfig
    from ray.train.v2.torch.torch_trainer import TorchTrainer

    # By reference, not by value: run as `python -m`, this file is __main__ here.
    from backends.local.ray_train import train_worker as worker

    ray.init(log_to_driver=True)  # the cluster of this job (RAY_ADDRESS, set by Ray)
    trainer = TorchTrainer(
        worker, train_loop_config={"run_dir": str(run.path)},
        scaling_config=ScalingConfig(**scaling(workers, gpus_per_worker, strategy)),
        run_config=RunConfig(
            name="ray-train", storage_path=str(run.path),
            failure_config=FailureConfig(max_failures=0, max_preemption_failures=0)))
    try:
        trainer.fit()
    except WorkerGroupError as exc:
        return dict(exc.worker_failures)
    return {}


def note_worker_failures(run: RunDir, failures: dict[int, Any]) -> None:
    """A failure record for each failed rank that could not leave its own (a worker process
    that died, e.g. killed by the OOM killer), in Ray Train's words."""
    for rank, error in failures.items():
        if run.rank_failure(rank).exists():
            continue
        cause = getattr(error, "health_check_failure", None) or error  # its process died
        words = " ".join(str(cause).split())
        words = words[max(0, words.find("Worker exit detail:")):]  # how the process ended
        write_json_atomic(run.rank_failure(rank), {
            "rank": rank, "at": time.time(), "collective": is_collective_error(cause),
            "reason": f"Ray Train worker failed: {type(cause).__name__}: "
                      f"{words[:MAX_RANK_REASON]}"})


def settle(run: RunDir, state: RunState, reason: str, workers: int) -> None:
    status = run.read_status()
    if status is not None and status.state.terminal:
        return
    run.write_status(state, reason=reason[:1500], result={"world_size": workers})
    run.event(f"finished-{state.value}", f"run {state.value}: {reason[:1500]}",
              level="error" if state is RunState.FAILED else "warning")


def drive(run: RunDir, workers: int, gpus_per_worker: float, strategy: str) -> int:
    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        run.request_stop("SIGTERM to the Ray Train driver")
        status = run.read_status()
        if status is None or status.state in (RunState.QUEUED, RunState.PLACING):
            raise _StoppedWhilePlacing  # out of fit(): the workers go with this process

    gpus = f", {gpus_per_worker:g} GPU each" if gpus_per_worker else " on CPU"
    run.event("ray-train-placing", f"Ray Train: placing {workers} workers ({strategy}{gpus})",
              workers=workers, placement=strategy)
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        failures = fit(run, workers, gpus_per_worker, strategy)
    except _StoppedWhilePlacing:
        settle(run, RunState.CANCELLED, f"cancelled while Ray placed its {workers} workers",
               workers)
        return 0
    except Exception as exc:  # Ray Train itself failed: storage not shared, placement, ...
        traceback.print_exc()
        settle(run, RunState.FAILED, f"Ray Train failed: {type(exc).__name__}: {exc}", workers)
        return 1
    if failures:
        note_worker_failures(run, failures)
        return settle_failed(run, {}, workers)
    status = run.read_status()
    if status is None or not status.state.terminal:
        return settle_failed(run, {}, workers)
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="tunebridge multi-node driver (Ray Train)")
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--num-workers", type=int, required=True)
    parser.add_argument("--gpus-per-worker", type=float, default=0)
    parser.add_argument("--placement", choices=PLACEMENTS, default=STRICT_SPREAD)
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(drive(RunDir(args.run_dir), args.num_workers, args.gpus_per_worker,
                   args.placement))


if __name__ == "__main__":
    main()
