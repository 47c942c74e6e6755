"""LocalBackend: the Backend protocol over trainer subprocesses on this host.

submit writes a run directory and queues it; poll reconciles processes, starts queued runs when a
slot is free, and reads new metric and event lines from the byte offsets in the cursor; cancel
asks the trainer to stop (file, then SIGTERM, then SIGKILL, escalated by later polls). Nothing
lives only in memory, so a new instance given a handle and a cursor continues exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends.base import BackendError, BackendEvent, Handle, JobSpec, MetricSample, Update
from backends.local.catalogue import ModelCatalogue, UnknownModel
from backends.local.distributed import ParallelismError, parallelism
from backends.local.engine import ENGINES
from backends.local.executor import Executor, ExecutorSettings, SubprocessExecutor
from backends.local.hyperparams import HyperparameterError, resolve
from backends.local.metrics import read_jsonl_from, to_sample
from backends.local.queue import RunQueue, detect_slots
from backends.local.runs import RunDir, RunState, RunStatus, write_json_atomic

if TYPE_CHECKING:
    from backends.local.ray_executor import RayConfig


@dataclass(frozen=True)
class Cursor:
    """Byte offsets into metrics.jsonl and events.jsonl, and the last queue position reported."""

    metrics: int = 0
    events: int = 0
    position: int | None = None

    def encode(self) -> str:
        return json.dumps({"m": self.metrics, "e": self.events, "q": self.position})

    @classmethod
    def decode(cls, raw: str | None) -> Cursor:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            return cls(int(data.get("m", 0)), int(data.get("e", 0)), data.get("q"))
        except (ValueError, TypeError, AttributeError):
            raise BackendError(f"unreadable cursor {raw!r}", retryable=False) from None


def run_id_for(job_id: str) -> str:
    """A directory-safe id derived from the job id, so a repeated submit finds the same run."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", job_id)[:60]
    digest = hashlib.sha256(job_id.encode()).hexdigest()[:8]
    return f"local-{safe}-{digest}"


class LocalBackend:
    name = "local"

    def __init__(
        self,
        runs_dir: Path,
        models_dir: Path,
        *,
        torch_threads: int | None = None,
        slots: Sequence[str] | None = None,
        term_after_s: float = 5.0,
        kill_after_s: float = 60.0,
        heartbeat_interval_s: float = 5.0,
        heartbeat_timeout_s: float = 300.0,
        python: str | None = None,
        allow_hub_ids: bool = True,
        env: Mapping[str, str] | None = None,
        ray: RayConfig | None = None,
    ) -> None:
        # Absolute: the trainer runs in its own working directory and reads these paths.
        self.runs_dir = Path(runs_dir).resolve()
        self.catalogue = ModelCatalogue(Path(models_dir).resolve(), allow_hub_ids=allow_hub_ids)
        self.torch_threads = torch_threads
        self.heartbeat_interval_s = heartbeat_interval_s
        self.queue = RunQueue(self.runs_dir, list(slots) if slots else detect_slots())
        settings = ExecutorSettings(
            python=python or sys.executable, torch_threads=torch_threads,
            term_after_s=term_after_s, kill_after_s=kill_after_s,
            heartbeat_timeout_s=heartbeat_timeout_s, env=tuple((env or {}).items()),
        )
        self.executor: Executor = SubprocessExecutor(self.runs_dir, self.queue, settings)
        if ray is not None:  # trainers as Ray Jobs; imported only when configured
            from backends.local.ray_executor import RayExecutor

            self.executor = RayExecutor(self.runs_dir, self.queue, settings, ray)

    # -- protocol ---------------------------------------------------------------------------

    async def submit(self, spec: JobSpec) -> Handle:
        return await asyncio.to_thread(self.submit_sync, spec)

    async def poll(self, handle: Handle, cursor: str | None) -> Update:
        return await asyncio.to_thread(self.poll_sync, handle, cursor)

    async def cancel(self, handle: Handle) -> None:
        await asyncio.to_thread(self.cancel_sync, handle)

    # -- synchronous implementations (run in a worker thread) -------------------------------

    def submit_sync(self, spec: JobSpec) -> Handle:
        run = RunDir(self.runs_dir / run_id_for(spec.job_id))
        with self.queue.locked():
            if not run.exists():
                document = self._spec_document(spec)
                run.path.mkdir(parents=True, exist_ok=True)
                write_json_atomic(run.spec, document)
                run.write_status(RunState.QUEUED)
                self.queue.enqueue(run.run_id, document["seq"])
                run.event("queued", f"queued for local {spec.method} training")
            self.executor.pump()
        return self._handle(run)

    def poll_sync(self, handle: Handle, cursor: str | None) -> Update:
        run = self._run(handle)
        position = Cursor.decode(cursor)
        with self.queue.locked():
            self.executor.pump()
            status = self.executor.reconcile(run)
            queue_position = self.queue.position(run.run_id)
        metrics = read_jsonl_from(run.metrics, position.metrics)
        events = read_jsonl_from(run.events, position.events)
        converted = [self._event(run, record) for record in events.records]
        if queue_position is not None and queue_position != position.position:
            converted.append(self._queue_event(run, queue_position))
        return Update(
            status=status.state.remote(),
            metrics=[s for s in map(to_sample, metrics.records) if isinstance(s, MetricSample)],
            events=converted,
            cursor=Cursor(metrics.next_offset, events.next_offset, queue_position).encode(),
            result=self._result(run, status),
            error=self._error(status),
        )

    def cancel_sync(self, handle: Handle) -> None:
        run = self._run(handle)
        with self.queue.locked():
            status = self.executor.reconcile(run)
            if status.state.terminal:
                return
            if status.state is RunState.QUEUED:
                self.queue.dequeue(run.run_id)
                run.write_status(RunState.CANCELLED, reason="cancelled while queued")
                run.event("cancelled-queued", "cancelled before it started")
                return
            self.executor.request_stop(run, "cancel requested")
            self.executor.pump()  # escalates at once when term_after_s is 0

    # -- helpers ----------------------------------------------------------------------------

    def _spec_document(self, spec: JobSpec) -> dict[str, Any]:
        """Validate what can be validated without the trainer; user errors are not retryable."""
        try:
            resolved = resolve(spec.method, spec.hyperparameters, spec.seed)
            model = self.catalogue.resolve(spec.base_model)
        except (HyperparameterError, UnknownModel) as exc:
            raise BackendError(str(exc), retryable=False) from exc
        options = dict(spec.options)
        if options.get("engine", "auto") not in ENGINES:
            raise BackendError(f"engine must be one of {ENGINES}", retryable=False)
        try:  # num_nodes > 1 only where trainers can start on other machines (Ray)
            wanted = parallelism(options, multi_node=getattr(self.executor, "multi_node", False))
        except ParallelismError as exc:
            raise BackendError(str(exc), retryable=False) from exc
        if wanted.data_parallel and options.get("engine") == "unsloth":
            raise BackendError("engine 'unsloth' trains on one GPU; a data-parallel job needs "
                               "engine 'auto' or 'hf'", retryable=False)
        problem = self.executor.check(wanted)
        if problem is not None:
            raise BackendError(problem, retryable=False)
        if not Path(spec.training_file).is_file():
            raise BackendError(f"training file {spec.training_file} not found", retryable=False)
        return {
            "job_id": spec.job_id, "base_model": spec.base_model,
            "model_location": model.location, "model_source": model.source,
            "method": spec.method, "hyperparameters": resolved.values,
            "ignored_hyperparameters": list(resolved.ignored),
            "training_file": str(Path(spec.training_file).resolve()),
            "validation_file": str(Path(spec.validation_file).resolve())
            if spec.validation_file else None,
            "suffix": spec.suffix, "options": options, "torch_threads": self.torch_threads,
            "heartbeat_interval": self.heartbeat_interval_s,
            "seq": time.time_ns(), "submitted_at": time.time(),
        }

    def _handle(self, run: RunDir) -> Handle:
        return Handle(external_id=run.run_id, state={"run_dir": str(run.path)})

    def _run(self, handle: Handle) -> RunDir:
        path = handle.state.get("run_dir") if handle.state else None
        run = RunDir(Path(path) if path else self.runs_dir / handle.external_id)
        if not run.exists():
            raise BackendError(f"run directory {run.path} is gone", retryable=False)
        return run

    def _event(self, run: RunDir, record: dict[str, Any]) -> BackendEvent:
        at = record.get("at")
        return BackendEvent(
            event_id=f"{run.run_id}:{record.get('id')}",
            message=str(record.get("message", "")),
            level=str(record.get("level", "info")),
            created_at=datetime.fromtimestamp(float(at), UTC) if at else None,
            data=record.get("data") or {},
        )

    def _queue_event(self, run: RunDir, position: int) -> BackendEvent:
        running = len(self.queue.active())
        return BackendEvent(
            event_id=f"{run.run_id}:queue-position-{position}",
            message=f"waiting for a training slot: position {position} ({running} running)",
            data={"queue_position": position, "running": running,
                  "slots": len(self.queue.slots)},
        )

    def _result(self, run: RunDir, status: RunStatus) -> dict[str, Any] | None:
        if not status.state.terminal:
            return None
        return {**(status.result or {}), "run_dir": str(run.path), "reason": status.reason}

    def _error(self, status: RunStatus) -> dict[str, Any] | None:
        if status.state is not RunState.FAILED:
            return None
        return {"code": "local_trainer_failed", "message": status.reason or "trainer failed"}
