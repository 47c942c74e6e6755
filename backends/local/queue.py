"""A FIFO of runs waiting for a training slot, kept on disk so that it survives restarts.

Marker files, not a database: `.queue/<seq>-<run_id>` for waiting runs (the name sorts in
arrival order) and `.active/<run_id>` (holding its slot, or comma-separated slots for a
data-parallel job on several GPUs) for runs with a trainer process. One
`flock` over the runs directory serialises everything that reads and changes them, across
threads and across gateway processes on the same host.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

CPU_SLOT = "cpu"


def detect_slots() -> list[str]:
    """One slot per visible GPU, else a single CPU slot. Never imports torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v.strip() for v in visible.split(",") if v.strip() and v.strip() != "-1"]
        return ids or [CPU_SLOT]
    if shutil.which("nvidia-smi") is None:
        return [CPU_SLOT]
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return [CPU_SLOT]
    return [line.strip() for line in out.splitlines() if line.strip()] or [CPU_SLOT]


class RunQueue:
    def __init__(self, runs_dir: Path, slots: list[str]) -> None:
        self.runs_dir = Path(runs_dir)
        self.slots = list(slots)
        self._queue = self.runs_dir / ".queue"
        self._active = self.runs_dir / ".active"
        self._lock_path = self.runs_dir / ".lock"

    def ensure_dirs(self) -> None:
        self._queue.mkdir(parents=True, exist_ok=True)
        self._active.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.ensure_dirs()
        with self._lock_path.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def enqueue(self, run_id: str, seq: int) -> None:
        (self._queue / f"{seq:020d}-{run_id}").touch()

    def waiting(self) -> list[str]:
        """Run ids in arrival order."""
        return [p.name.split("-", 1)[1] for p in sorted(self._queue.iterdir())]

    def is_waiting(self, run_id: str) -> bool:
        return run_id in self.waiting()

    def dequeue(self, run_id: str) -> None:
        for marker in self._queue.glob(f"*-{run_id}"):
            if marker.name.split("-", 1)[1] == run_id:
                marker.unlink(missing_ok=True)

    def position(self, run_id: str) -> int | None:
        """1 means "next to start"; None when the run is not waiting."""
        waiting = self.waiting()
        return waiting.index(run_id) + 1 if run_id in waiting else None

    def active(self) -> dict[str, str]:
        """Run id -> its slot ("0"), or its slots joined by commas ("0,1")."""
        return {p.name: p.read_text().strip() for p in self._active.iterdir()}

    def activate(self, run_id: str, slot: str | list[str]) -> None:
        (self._active / run_id).write_text(slot if isinstance(slot, str) else ",".join(slot))
        self.dequeue(run_id)

    def release(self, run_id: str) -> None:
        (self._active / run_id).unlink(missing_ok=True)

    def free_slots(self) -> list[str]:
        used = {one for held in self.active().values() for one in held.split(",")}
        return [slot for slot in self.slots if slot not in used]

    @property
    def has_gpus(self) -> bool:
        return self.slots != [CPU_SLOT]
