"""On-disk layout of one local training run, shared by the gateway side and the trainer process.

Everything the two processes tell each other goes through files in the run directory, so that a
restarted gateway (or a second replica) can pick up a run knowing only its directory. Writes of
whole documents are atomic (write + rename); streams are append-only JSON lines.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from backends.base import RemoteStatus


class RunState(StrEnum):
    """Lifecycle of a run as recorded in status.json."""

    QUEUED = "queued"
    LAUNCHING = "launching"
    # Handed to a cluster scheduler (Ray) that has not started the trainer yet, e.g. waiting
    # for a GPU: still queued to the user, and time there is not running time.
    PLACING = "placing"
    LOADING = "loading"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def active(self) -> bool:
        """A trainer process exists (or should exist) for this run."""
        return self in _ACTIVE

    def remote(self) -> RemoteStatus:
        return _REMOTE[self]


_TERMINAL = {RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED}
_ACTIVE = {RunState.LAUNCHING, RunState.PLACING, RunState.LOADING, RunState.RUNNING}
_REMOTE = {
    RunState.QUEUED: RemoteStatus.QUEUED,
    RunState.LAUNCHING: RemoteStatus.RUNNING,
    RunState.PLACING: RemoteStatus.QUEUED,
    RunState.LOADING: RemoteStatus.RUNNING,
    RunState.RUNNING: RemoteStatus.RUNNING,
    RunState.SUCCEEDED: RemoteStatus.SUCCEEDED,
    RunState.FAILED: RemoteStatus.FAILED,
    RunState.CANCELLED: RemoteStatus.CANCELLED,
}


def write_json_atomic(path: Path, data: Any) -> None:
    """Readers never see a half-written document: write a sibling temp file, then rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """Read a JSON document; None when it does not exist yet."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """One write() per line with O_APPEND, so two processes can append to one stream safely."""
    line = (json.dumps(record, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class RunStatus:
    state: RunState
    reason: str | None = None
    updated_at: float = 0.0
    result: dict[str, Any] | None = None
    step: int | None = None
    max_steps: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "reason": self.reason,
            "updated_at": self.updated_at,
            "result": self.result,
            "step": self.step,
            "max_steps": self.max_steps,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunStatus:
        return cls(
            state=RunState(data["state"]),
            reason=data.get("reason"),
            updated_at=float(data.get("updated_at") or 0.0),
            result=data.get("result"),
            step=data.get("step"),
            max_steps=data.get("max_steps"),
        )


class RunDir:
    """Names every file of a run in one place so both processes agree on them."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.spec = self.path / "spec.json"
        self.status_file = self.path / "status.json"
        self.launch_file = self.path / "launch.json"
        self.heartbeat = self.path / "heartbeat.json"
        self.stop_file = self.path / "stop.json"
        self.metrics = self.path / "metrics.jsonl"
        self.events = self.path / "events.jsonl"
        self.log = self.path / "trainer.log"
        self.output_dir = self.path / "output"
        self.adapter_dir = self.path / "adapter"
        self.merged_dir = self.path / "merged"

    @property
    def run_id(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        return self.spec.exists()

    def read_spec(self) -> dict[str, Any]:
        data = read_json(self.spec)
        if data is None:
            raise FileNotFoundError(f"no spec.json in {self.path}")
        return dict(data)

    def read_status(self) -> RunStatus | None:
        data = read_json(self.status_file)
        return None if data is None else RunStatus.from_json(data)

    def write_status(self, state: RunState, reason: str | None = None, **fields: Any) -> RunStatus:
        status = RunStatus(state=state, reason=reason, updated_at=time.time(), **fields)
        write_json_atomic(self.status_file, status.to_json())
        return status

    def event(self, event_id: str, message: str, level: str = "info", **data: Any) -> None:
        """Append a lifecycle event; `event_id` is unique within the run so replays dedupe."""
        record = {"id": event_id, "at": time.time(), "level": level, "message": message}
        if data:
            record["data"] = data
        append_jsonl(self.events, record)

    def rank_failure(self, rank: int) -> Path:
        """Where a data-parallel rank that crashed says why (read by backends.local.launch)."""
        return self.path / f"rank-{rank}.failure.json"

    def stop_requested(self) -> bool:
        return self.stop_file.exists()

    def request_stop(self, reason: str) -> bool:
        """Write the stop file every rank checks between steps (finish the step, save, exit);
        False when a stop was requested already (its first reason stands)."""
        if self.stop_file.exists():
            return False
        write_json_atomic(self.stop_file, {"requested_at": time.time(), "reason": reason})
        return True

    def log_tail(self, lines: int = 5, max_bytes: int = 4096) -> str:
        """Last lines of the trainer's log, for failure reasons people can act on."""
        try:
            with self.log.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - max_bytes))
                text = fh.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        kept = [line for line in text.splitlines() if line.strip()]
        return "\n".join(kept[-lines:])
