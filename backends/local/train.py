"""Trainer process entry point: `python -m backends.local.train --run-dir DIR`.

Reads the spec the gateway wrote into DIR, trains, and writes everything back into DIR: metric
and event streams while it runs, then the adapter, trainer state and a final status. This is the
only process that imports torch, transformers, peft and trl. Exit codes: 0 for succeeded and
cancelled (a cooperative stop is a normal end), 1 for failed.

Data-parallel jobs run N of these under backends.local.launch (RANK, LOCAL_RANK and WORLD_SIZE
set): only rank 0 writes the status, heartbeat, streams and adapter; every rank stops at the same
step; a rank that crashes leaves `rank-K.failure.json` and the launcher writes the final status,
since it alone knows which rank failed first. Multi-node jobs call `run` inside Ray Train workers
(backends.local.ray_train) instead: same variables, the process group already joined, and the
training function on a thread of its own, so SIGTERM is the driver's to handle.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.local import data, distributed
from backends.local.distributed import World
from backends.local.engine import choose_path
from backends.local.lifecycle import Heartbeat, StopFlag
from backends.local.runs import RunDir, RunState, write_json_atomic


@dataclass
class Context:
    run: RunDir
    spec: dict[str, Any]
    stop: StopFlag
    heartbeat: Heartbeat | None  # rank 0's only
    world: World = field(default_factory=World)
    result: dict[str, Any] = field(default_factory=dict)

    def event(self, event_id: str, message: str, level: str = "info", **data: Any) -> None:
        """Events come from rank 0 only, so a data-parallel run reports each thing once."""
        if self.world.main:
            self.run.event(event_id, message, level, **data)

    @property
    def hp(self) -> dict[str, Any]:
        return dict(self.spec["hyperparameters"])

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.spec.get("options") or {})


def load_examples(ctx: Context) -> tuple[list[data.Row], list[data.Row] | None]:
    train = data.read_jsonl(Path(ctx.spec["training_file"]))
    if ctx.spec.get("validation_file"):
        return train, data.read_jsonl(Path(ctx.spec["validation_file"]))
    share = float(ctx.options.get("eval_holdout") or 0)
    if share > 0:
        return data.split_holdout(train, share, int(ctx.hp["seed"]))
    return train, None


def prepare(method: str, rows: list[data.Row], marks_generation: bool) -> data.Prepared:
    if method == "dpo":
        return data.prepare_dpo(rows)
    return data.prepare_sft(rows, marks_generation)


def execute(ctx: Context) -> RunState:
    """Load, train, save. Returns the final state; raises on crashes (the caller records them)."""
    import torch

    from backends.local import modeling, trainers
    from backends.local.callback import StreamCallback

    if ctx.spec.get("torch_threads"):
        torch.set_num_threads(int(ctx.spec["torch_threads"]))
    cuda = modeling.cuda_available()
    backend = distributed.init_group(ctx.world, cuda)
    if ctx.world.distributed:
        ctx.result.update(world_size=ctx.world.size, distributed_backend=backend)
    train_rows, eval_rows = load_examples(ctx)
    unsloth = importlib.util.find_spec("unsloth") is not None
    path = choose_path(str(ctx.options.get("engine", "auto")), cuda, unsloth,
                       data_parallel=ctx.world.distributed)
    where = f", {ctx.world.size} data-parallel processes" if ctx.world.distributed else ""
    ctx.event("loading", f"loading {ctx.spec['base_model']} ({path}{where})", path=path,
              world_size=ctx.world.size)
    loaded = modeling.load(ctx.spec["model_location"], path, ctx.hp, ctx.world.cuda_index)
    ctx.result.update(path=path, device=loaded.device)
    if distributed.any_rank(ctx.stop.is_set()):
        ctx.result["stop_reason"] = "cancelled before training started"
        return RunState.CANCELLED
    marks = trainers.template_marks_generation(loaded.tokenizer)
    method = ctx.spec["method"]
    train = prepare(method, train_rows, marks)
    evaluation = prepare(method, eval_rows, marks) if eval_rows else None
    ctx.result.update(loss_mask=train.loss_mask, train_examples=len(train.rows),
                      eval_examples=len(evaluation.rows) if evaluation else 0)
    stream = StreamCallback(ctx.run, ctx.stop, ctx.heartbeat)
    trainer = trainers.build_trainer(
        method, loaded, train, evaluation, ctx.hp, ctx.run, ctx.options, [stream],
        world_size=ctx.world.size,
    )
    trainer.train()
    return finish(ctx, trainer, stream, train)


def finish(ctx: Context, trainer: Any, stream: Any, train: data.Prepared) -> RunState:
    """Record what happened and save the adapter (unless the loss went non-finite)."""
    state = trainer.state
    ranks = distributed.gather({"rank": ctx.world.rank, "global_step": state.global_step,
                                "stopped_at": stream.stopped_at})
    if ctx.world.distributed:  # every rank stopped at the same step: the proof is here
        ctx.result["ranks"] = ranks
    ctx.result.update(
        global_step=state.global_step, max_steps=state.max_steps, epoch=state.epoch,
        train_summary=stream.summary, best_checkpoint=state.best_model_checkpoint,
        best_eval_loss=state.best_metric, best_step=_best_step(state),
        last_metrics=state.log_history[-2:] if state.log_history else [],
    )
    ctx.result.update(_peak_memory())
    if stream.failure:
        ctx.result["failure"] = stream.failure
        return RunState.FAILED
    save_outputs(ctx, trainer)
    if stream.stopped_at is not None:
        ctx.result["stop_reason"] = f"cancelled after step {stream.stopped_at}"
        return RunState.CANCELLED
    stopped_early = state.global_step < state.max_steps
    ctx.result["stop_reason"] = "early_stopping" if stopped_early else "completed"
    if stopped_early:
        ctx.event("early-stopped", f"early stopping at step {state.global_step}; best "
                  f"eval_loss {state.best_metric} at step {_best_step(state)}")
    if ctx.world.main:  # the probe and the merge need no other rank
        post_training(ctx, trainer, train)
    return RunState.SUCCEEDED


def _peak_memory() -> dict[str, int]:
    """Peak GPU memory of the run, so people can size the next job's GPU (none on CPU)."""
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"peak_vram_allocated_bytes": int(torch.cuda.max_memory_allocated()),
            "peak_vram_reserved_bytes": int(torch.cuda.max_memory_reserved())}


def _best_step(state: Any) -> int | None:
    checkpoint = state.best_model_checkpoint
    return int(checkpoint.rsplit("-", 1)[1]) if checkpoint else None


def save_outputs(ctx: Context, trainer: Any) -> None:
    adapter = ctx.run.adapter_dir
    trainer.save_model(str(adapter))  # every rank calls it; only rank 0 writes
    if not ctx.world.main:
        return
    trainer.processing_class.save_pretrained(str(adapter))
    trainer.save_state()  # output/trainer_state.json
    ctx.result.update(
        adapter_path=str(adapter),
        tokenizer_path=str(adapter),
        trainer_state_path=str(ctx.run.output_dir / "trainer_state.json"),
    )
    ctx.run.event("adapter-saved", f"adapter saved to {adapter}", path=str(adapter))


def post_training(ctx: Context, trainer: Any, train: data.Prepared) -> None:
    """The memorization probe and the optional merged model; neither may fail the run."""
    from backends.local import artifacts

    probe_size = int(ctx.options.get("memorization_probe", 4))
    if ctx.spec["method"] == "sft" and probe_size > 0:
        pairs = data.probe_pairs(train.rows, probe_size, int(ctx.hp["seed"]))
        try:
            ctx.result["memorization"] = artifacts.memorization_probe(
                trainer.model, trainer.processing_class, pairs)
        except Exception as exc:  # a probe is advice, never a reason to fail a run
            ctx.result["memorization"] = {"error": f"{type(exc).__name__}: {exc}"}
    if ctx.options.get("merge"):
        out = artifacts.merge_adapter(ctx.spec["model_location"], ctx.run.adapter_dir,
                                      ctx.run.merged_dir)
        ctx.result["merged_model_path"] = str(out)


def record_rank_failure(ctx: Context, exc: Exception, reason: str) -> None:
    """A data-parallel rank's crash, for the launcher to name in the final status."""
    record = {"rank": ctx.world.rank, "at": time.time(), "reason": reason,
              "collective": distributed.is_collective_error(exc)}
    if ctx.world.main:
        record["result"] = ctx.result
    write_json_atomic(ctx.run.rank_failure(ctx.world.rank), record)


def run(run_dir: Path) -> int:
    world = World.from_env()
    if world.distributed:
        distributed.die_with_launcher()
    run_ = RunDir(run_dir)
    stop = StopFlag(run_)
    if threading.current_thread() is threading.main_thread():  # not so in a Ray Train worker
        stop.install_sigterm()
    spec = run_.read_spec()
    heartbeat = None
    if world.main:  # the other ranks of a data-parallel run write nothing to the run directory
        heartbeat = Heartbeat(run_, float(spec.get("heartbeat_interval", 5.0)))
        heartbeat.start()
        run_.write_status(RunState.LOADING)
    ctx = Context(run_, spec, stop, heartbeat, world)
    try:
        final = execute(ctx)
    except Exception as exc:
        traceback.print_exc()
        reason = f"trainer crashed: {type(exc).__name__}: {exc}"
        if world.distributed:
            record_rank_failure(ctx, exc, reason)
        else:
            run_.write_status(RunState.FAILED, reason=reason, result=ctx.result)
            run_.event("failed", reason, level="error")
        return 1
    finally:
        if heartbeat is not None:
            heartbeat.close()
        if world.distributed:
            with contextlib.suppress(Exception):  # a group whose peers are gone
                distributed.close_group()
    if not world.main:
        return 1 if final is RunState.FAILED else 0
    reason = str(ctx.result.get("failure") or ctx.result.get("stop_reason"))
    run_.write_status(final, reason=reason, result=ctx.result)
    run_.event(f"finished-{final.value}", f"run {final.value}: {reason}",
               level="error" if final is RunState.FAILED else "info")
    return 1 if final is RunState.FAILED else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="tunebridge local trainer")
    parser.add_argument("--run-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(run(args.run_dir))


if __name__ == "__main__":
    main()
