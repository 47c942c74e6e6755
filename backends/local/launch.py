"""Data-parallel launcher: `python -m backends.local.launch --nproc-per-node N --run-dir DIR`.

torch's own launcher (`torch.distributed.run`, the code behind `torchrun`) starts N copies of the
trainer, `python -m backends.local.train --run-dir DIR`, with RANK, LOCAL_RANK and WORLD_SIZE set;
transformers' Trainer sees them and trains with DistributedDataParallel. We chose torchrun over
`accelerate launch` because it ships with torch (no extra dependency, no accelerate config file)
and its standalone rendezvous binds a free localhost port per job, so concurrent jobs never
collide. It runs through torchrun's Python API rather than the `torchrun` command, for what the
run directory needs and torchrun alone does not give:

- A final status that names the rank that failed first and why. torchrun only prints a summary
  (and orders failures by whole-second timestamps); the ranks leave failure records here.
- SIGTERM to the launcher (the executors' escalation, Ray's `stop_job`) becomes the run's stop
  file, so every rank stops at the same step and rank 0 saves the adapter. torchrun would
  forward SIGTERM and SIGKILL the ranks 30 s later, whatever they were doing.
- The ranks die with the launcher (distributed.die_with_launcher): torchrun starts each rank in
  its own session, out of reach of a signal to the launcher's process group.

This process is what the executors track (pid and start time in launch.json; the Ray job's
entrypoint), so re-attaching after a gateway restart works as for a single trainer.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from backends.local.distributed import LAUNCHER_PID_ENV
from backends.local.process import describe_exit
from backends.local.runs import RunDir, RunState, read_json

MAX_RANK_REASON = 400


def torchrun_args(run_dir: Path, processes: int) -> list[str]:
    """The `torchrun` command line this launcher runs, minus the program name."""
    return [
        "--standalone", f"--nproc-per-node={processes}", "--max-restarts=0",
        "--monitor-interval=0.5",
        "--signals-to-handle=SIGINT,SIGHUP,SIGQUIT",  # SIGTERM is ours: see request_stop
        "-m", "backends.local.train", "--run-dir", str(run_dir),
    ]


def read_rank_failures(run: RunDir) -> dict[int, dict[str, Any]]:
    records: dict[int, dict[str, Any]] = {}
    for path in run.path.glob("rank-*.failure.json"):
        try:
            record = read_json(path)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("rank"), int):
            records[record["rank"]] = record
    return records


def failure_reason(
    exits: Mapping[int, int | None], records: Mapping[int, dict[str, Any]], world_size: int,
) -> str:
    """One sentence about a failed data-parallel run, the rank that most likely caused it first.

    Order of blame: an error a rank raised itself (earliest first); a rank that died without
    raising (a signal such as the OOM killer's SIGKILL, or a crash before its error handler);
    an error from a broken collective (a symptom of another rank going away); SIGTERM last (the
    launcher's own clean-up of the survivors).
    """
    ranks = sorted(set(exits) | set(records))

    def blame(rank: int) -> tuple[int, float, int]:
        record = records.get(rank)
        if record is not None:
            return (2 if record.get("collective") else 0, float(record.get("at") or 0), rank)
        return (3 if exits.get(rank) == -signal.SIGTERM else 1, 0.0, rank)

    def describe(rank: int) -> str:
        record = records.get(rank)
        if record is not None:
            return str(record.get("reason") or "failed")[:MAX_RANK_REASON]
        return describe_exit(exits.get(rank))

    ordered = sorted(ranks, key=blame)
    if not ordered:
        return f"all {world_size} data-parallel trainers exited without a final status"
    first, rest = ordered[0], ordered[1:]
    reason = f"rank {first} of {world_size} failed first: {describe(first)}"
    if rest:
        reason += "; then " + "; ".join(f"rank {r}: {describe(r)}" for r in rest)
    return reason


def settle_failed(run: RunDir, exits: Mapping[int, int | None], world_size: int) -> int:
    """Write the final status the ranks could not (none may leave one behind after a crash)."""
    status = run.read_status()
    if status is not None and status.state.terminal:  # rank 0 ended the run itself
        return 1
    records = read_rank_failures(run)
    reason = failure_reason(exits, records, world_size)
    if run.stop_requested() and not records:  # no rank raised: the stop took them down
        state = RunState.CANCELLED
        reason = f"trainers were stopped before they saved an adapter: {reason}"
    else:
        state = RunState.FAILED
    result = dict((records.get(0) or {}).get("result") or {})
    result.update(world_size=world_size, checkpoints=sorted(
        str(p) for p in run.output_dir.glob("checkpoint-*")))
    run.write_status(state, reason=reason, result=result)
    run.event(f"finished-{state.value}", f"run {state.value}: {reason}",
              level="error" if state is RunState.FAILED else "warning")
    return 1


def launch(run_dir: Path, processes: int) -> int:
    run = RunDir(run_dir)
    os.environ[LAUNCHER_PID_ENV] = str(os.getpid())

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        run.request_stop("SIGTERM to the data-parallel launcher")  # all ranks stop at one step

    signal.signal(signal.SIGTERM, on_sigterm)
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch
    from torch.distributed.run import config_from_args, parse_args

    args = parse_args(torchrun_args(run.path, processes))
    args.rdzv_backend, args.rdzv_endpoint = "c10d", "localhost:0"  # what --standalone does
    args.rdzv_id = f"tunebridge-{run.run_id}-{os.getpid()}"
    config, entrypoint, entry_args = config_from_args(args)
    try:
        elastic_launch(config, entrypoint)(*entry_args)
    except ChildFailedError as exc:
        return settle_failed(run, {rank: f.exitcode for rank, f in exc.failures.items()},
                             processes)
    except Exception as exc:  # the launcher itself broke (rendezvous, a signal other than TERM)
        traceback.print_exc()
        _launcher_error(run, exc)
        return 1
    status = run.read_status()
    if status is None or not status.state.terminal:
        return settle_failed(run, {}, processes)
    return 0


def _launcher_error(run: RunDir, exc: Exception) -> None:
    status = run.read_status()
    if status is not None and status.state.terminal:
        return
    reason = f"data-parallel launcher failed: {type(exc).__name__}: {exc}"[:1500]
    run.write_status(RunState.FAILED, reason=reason)
    run.event("launcher-failed", reason, level="error")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="tunebridge data-parallel launcher")
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--nproc-per-node", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(launch(args.run_dir, args.nproc_per_node))


if __name__ == "__main__":
    main()
