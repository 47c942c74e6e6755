"""The executor's process handling against real processes that are not trainers (no torch):
a trainer that ignores stop requests, one that stops responding, a lost queue marker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from backends.base import Handle, RemoteStatus
from backends.local.queue import CPU_SLOT, detect_slots
from backends.local.runs import RunDir, RunState, write_json_atomic
from tests.local.conftest import Observed, fake_trainer, make_backend, poll_once, poll_until

STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"


def test_stop_escalates_to_sigkill_after_the_grace_period(tmp_path: Path) -> None:
    backend = make_backend(tmp_path, term_after_s=0.0, kill_after_s=1.0)
    handle, process = fake_trainer(backend.runs_dir, "stubborn", STUBBORN)
    time.sleep(0.5)  # let it install its SIGTERM handler
    asyncio.run(backend.cancel(handle))
    seen = poll_until(backend, handle, Observed(), timeout=15)
    assert seen.final.status is RemoteStatus.CANCELLED
    assert "stopped forcibly" in (seen.final.result or {})["reason"]
    assert {"stop-requested", "sigterm", "sigkill"} <= set(seen.event_ids())
    assert process.wait(timeout=5) == -9
    assert backend.queue.free_slots() == [CPU_SLOT]


def test_trainer_without_heartbeat_is_killed_and_failed(tmp_path: Path) -> None:
    backend = make_backend(tmp_path, heartbeat_timeout_s=5.0)
    handle, process = fake_trainer(backend.runs_dir, "frozen", "import time; time.sleep(120)")
    run = RunDir(Path(handle.state["run_dir"]))
    assert poll_once(backend, handle, Observed()).status is RemoteStatus.RUNNING
    write_json_atomic(run.heartbeat, {"at": time.time() - 60, "step": 3})
    update = poll_once(backend, handle, Observed())
    assert update.status is RemoteStatus.FAILED
    assert "stopped responding" in (update.error or {})["message"]
    assert process.wait(timeout=5) == -9


def test_a_queued_run_without_its_marker_is_requeued(tmp_path: Path) -> None:
    backend = make_backend(tmp_path)
    _, busy = fake_trainer(backend.runs_dir, "busy", "import time; time.sleep(120)")
    try:
        run = RunDir(backend.runs_dir / "orphan")
        run.path.mkdir()
        write_json_atomic(run.spec, {"job_id": "orphan", "seq": 5})
        run.write_status(RunState.QUEUED)  # the submit died before enqueueing
        update = poll_once(backend, Handle("orphan", {"run_dir": str(run.path)}), Observed())
        assert update.status is RemoteStatus.QUEUED
        assert backend.queue.waiting() == ["orphan"]
    finally:
        busy.kill()
        busy.wait()


def test_slots_follow_visible_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert detect_slots() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert detect_slots() == [CPU_SLOT]
    backend = make_backend(Path("/nonexistent"), slots=["0", "1"])
    env = backend.executor._env("1")
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["OMP_NUM_THREADS"] == "1"
    assert backend.executor._env(CPU_SLOT)["CUDA_VISIBLE_DEVICES"] == ""
