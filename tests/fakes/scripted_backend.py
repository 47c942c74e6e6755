"""A fine-tuning provider that lives in tests: a real Backend whose jobs advance with wall time.

Provider-side state is kept in files under `state_dir`, like a remote service that survives our
crashes: a restarted gateway finds its jobs where they are. Per-job behaviour comes from
`spec.options` (`scripted_steps`, `scripted_fail_at`, `scripted_step_seconds`).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from backends.base import (
    BackendError,
    BackendEvent,
    Handle,
    JobSpec,
    MetricSample,
    RemoteStatus,
    Update,
)


class ScriptedBackend:
    name = "scripted"

    def __init__(self, state_dir: Path, *, step_seconds: float = 0.05, steps: int = 20) -> None:
        self.state_dir = state_dir
        self.step_seconds = step_seconds
        self.steps = steps
        self.calls: list[str] = []  # what the provider was asked, for assertions
        self.fail_next: list[BackendError] = []  # provider outages to play, in order
        state_dir.mkdir(parents=True, exist_ok=True)

    def _record_path(self, external_id: str) -> Path:
        return self.state_dir / f"{external_id}.json"

    def _read(self, external_id: str) -> dict[str, Any]:
        return dict(json.loads(self._record_path(external_id).read_text()))

    def _write(self, external_id: str, record: dict[str, Any]) -> None:
        tmp = self._record_path(external_id).with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self._record_path(external_id))

    def _outage(self, call: str) -> None:
        self.calls.append(call)
        if self.fail_next:
            raise self.fail_next.pop(0)

    async def submit(self, spec: JobSpec) -> Handle:
        self._outage("submit")
        external_id = f"scr-{spec.job_id}"
        if not self._record_path(external_id).exists():  # a resubmit adopts the first one
            self._write(external_id, {
                "submitted_at": time.time(),
                "steps": int(spec.options.get("scripted_steps", self.steps)),
                "fail_at": spec.options.get("scripted_fail_at"),
                "step_seconds": float(spec.options.get("scripted_step_seconds",
                                                       self.step_seconds)),
                "training_lines": sum(1 for _ in spec.training_file.open("rb")),
                "curve": spec.options.get("scripted_curve", "healthy"),
                "lr": _lr_config(spec.hyperparameters),
                "submissions": 0,
            })
        record = self._read(external_id)
        record["submissions"] += 1
        self._write(external_id, record)
        return Handle(external_id=external_id, state={"provider": "scripted"})

    async def poll(self, handle: Handle, cursor: str | None) -> Update:
        self._outage("poll")
        record = self._read(handle.external_id)
        end = record.get("cancelled_at") or time.time()
        done = min(record["steps"], int((end - record["submitted_at"]) / record["step_seconds"]))
        if record["fail_at"] is not None:
            done = min(done, int(record["fail_at"]))
        seen = int(cursor or 0)
        curve = record.get("curve", "healthy")
        metrics = [self._sample(step, curve, record["steps"], record.get("lr"))
                   for step in range(seen + 1, done + 1)]
        events = [BackendEvent(event_id=f"{handle.external_id}:{step}",
                               message=f"Step {step}/{record['steps']}")
                  for step in range(seen + 1, done + 1) if step % 5 == 0]
        return Update(status=self._status(record, done), metrics=metrics, events=events,
                      cursor=str(done), **self._outcome(record, done))

    @staticmethod
    def _status(record: dict[str, Any], done: int) -> RemoteStatus:
        if record.get("cancelled_at"):
            return RemoteStatus.CANCELLED
        if record["fail_at"] is not None and done >= int(record["fail_at"]):
            return RemoteStatus.FAILED
        if done >= record["steps"]:
            return RemoteStatus.SUCCEEDED
        return RemoteStatus.RUNNING if done > 0 else RemoteStatus.QUEUED

    @staticmethod
    def _outcome(record: dict[str, Any], done: int) -> dict[str, Any]:
        if record["fail_at"] is not None and done >= int(record["fail_at"]):
            return {"error": {"code": "scripted_failure", "message": f"failed at step {done}"}}
        if done >= record["steps"] and not record.get("cancelled_at"):
            return {"result": {"model": f"scripted:{record['steps']}", "steps": done}}
        return {}

    @staticmethod
    def _sample(step: int, curve: str = "healthy", total: int = 60,
                lr: dict[str, Any] | None = None) -> MetricSample:
        """`healthy`: loss decays. `overfit`: eval every 5 steps falls to a minimum at step 20,
        then climbs while train loss keeps falling. `nan`: train loss turns NaN at step 15.
        The lr follows the job's schedule like HF's linear scheduler (warm-up over
        ceil(warmup_ratio x total) steps, then linear decay to 0); `lr_no_warmup` skips the
        warm-up, as a trainer that ignored the setting would."""
        train = 2.0 * math.exp(-step / 10)
        eval_loss = None
        if curve == "overfit" and step % 5 == 0:
            eval_loss = 2.2 - 0.05 * step if step <= 20 else 1.2 + 0.04 * (step - 20)
        if curve == "nan" and step >= 15:
            train = math.nan
        return MetricSample(step=step, epoch=step / 10, train_loss=train, eval_loss=eval_loss,
                            grad_norm=1.0, learning_rate=_lr(lr, step, total, curve),
                            extra={"total_steps": float(total)})

    async def cancel(self, handle: Handle) -> None:
        self._outage("cancel")
        record = self._read(handle.external_id)
        record.setdefault("cancelled_at", time.time())
        self._write(handle.external_id, record)

    def submissions(self, job_id: str) -> int:
        return int(self._read(f"scr-{job_id}")["submissions"])


def _lr_config(hyperparameters: Any) -> dict[str, Any] | None:
    peak = hyperparameters.get("learning_rate")
    if not isinstance(peak, int | float):
        return None
    return {"peak": float(peak), "warmup_ratio": float(hyperparameters.get("warmup_ratio") or 0)}


def _lr(config: dict[str, Any] | None, step: int, total: int, curve: str) -> float:
    if config is None:
        return 2e-4
    peak = config["peak"]
    warmup = 0 if curve == "lr_no_warmup" else math.ceil(config["warmup_ratio"] * total)
    if step < warmup:
        return peak * step / warmup
    return peak * max(0.0, (total - step) / max(1, total - warmup))


def build(settings: Any) -> ScriptedBackend:
    """Plugin factory for `TUNEBRIDGE_BACKEND_PLUGINS` (used by the subprocess tests)."""
    step_seconds = float(os.environ.get("SCRIPTED_STEP_SECONDS", "0.05"))
    return ScriptedBackend(Path(settings.data_dir) / "scripted-provider",
                           step_seconds=step_seconds)
