"""The trainer's side of the live metric stream and of cooperative stopping.

A TrainerCallback is the extension point trl and transformers offer: it sees every log record and
every step boundary without forking a trainer. Stopping between steps (rather than killing) lets
the trainer save the adapter and its state, so a cancelled run still leaves usable work.

In a data-parallel run every rank has this callback: rank 0 (`state.is_world_process_zero`) alone
writes metrics, status and events, and the stop decision is all-reduced at every step end, so
all ranks leave the training loop after the same step (a rank that went on would wait forever in
its next all-reduce). The logged loss and grad norm are already gathered across ranks, so the
non-finite check decides the same everywhere without another collective.
"""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from backends.local.distributed import any_rank
from backends.local.lifecycle import Heartbeat, StopFlag
from backends.local.metrics import non_finite
from backends.local.runs import RunDir, RunState, append_jsonl


class StreamCallback(TrainerCallback):
    """Appends each log record to metrics.jsonl; stops on request or on a non-finite loss."""

    def __init__(self, run: RunDir, stop: StopFlag, heartbeat: Heartbeat | None = None) -> None:
        self.run = run
        self.stop = stop
        self.heartbeat = heartbeat
        self.failure: str | None = None
        self.summary: dict[str, Any] = {}
        self.stopped_at: int | None = None

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not logs:
            return
        if "train_runtime" in logs:  # the end-of-training summary is not a metric point
            self.summary = dict(logs)
            return
        if state.is_world_process_zero:
            kind = "eval" if any(key.startswith("eval_") for key in logs) else "train"
            record = {"step": state.global_step, "epoch": state.epoch, "kind": kind,
                      "at": time.time()}
            record.update(logs)
            append_jsonl(self.run.metrics, record)
        bad = non_finite(logs)
        if bad and self.failure is None:
            self.failure = f"{bad} became {logs[bad]} at step {state.global_step}"
            control.should_training_stop = True

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.is_world_process_zero:
            self.run.write_status(RunState.RUNNING, step=state.global_step,
                                  max_steps=state.max_steps)
            self.run.event("training-started", f"training: {state.max_steps} steps",
                           max_steps=state.max_steps, world_size=args.world_size)
        self._note_step(state)

    def _note_step(self, state: TrainerState) -> None:
        if self.heartbeat is not None:
            self.heartbeat.step = state.global_step
            self.heartbeat.max_steps = state.max_steps

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._note_step(state)
        if self.stopped_at is None and any_rank(self.stop.is_set()):
            self.stopped_at = state.global_step
            source = self.stop.source or "a stop seen by another rank"
            if state.is_world_process_zero:
                self.run.event("stop-honoured", f"stopping after step {state.global_step} "
                               f"({source})", step=state.global_step)
        if self.stopped_at is not None:
            control.should_training_stop = True
            control.should_save = False
            control.should_evaluate = False
