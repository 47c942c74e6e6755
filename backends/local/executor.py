"""Runs trainer subprocesses on this host: starts queued runs, watches live ones, stops them.

Every decision is taken from the files in the run directories, so a gateway that restarts (or a
fresh LocalBackend instance) carries on where the last one stopped: a live trainer is re-attached
by pid and start time, a vanished one is reported failed with the reason we can establish.
Callers hold the queue lock around every method here.

A data-parallel job (backends.local.distributed) takes as many GPU slots as it asks GPUs for (one
slot on a CPU host) and starts backends.local.launch instead of the trainer; that launcher is
the process tracked, signalled and re-attached here, and its trainers die with it. The queue
stays strictly first in, first out: a job waiting for two GPUs is not overtaken by later
one-GPU jobs, so it cannot starve.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from backends.local.distributed import Parallelism, ParallelismError, parallelism
from backends.local.process import (
    ProcessRef,
    describe_exit,
    is_alive,
    launcher_command,
    signal_group,
    spawn,
    start_ticks,
    trainer_command,
)
from backends.local.queue import CPU_SLOT, RunQueue
from backends.local.runs import RunDir, RunState, RunStatus, read_json, write_json_atomic


class Executor(Protocol):
    """What LocalBackend needs from whatever runs its trainers: this host's subprocesses
    (SubprocessExecutor) or Ray Jobs (ray_executor.RayExecutor). Callers hold the queue lock."""

    def pump(self) -> None:
        """Start waiting runs where there is room; settle runs whose trainer is gone."""

    def reconcile(self, run: RunDir) -> RunStatus:
        """The run's status after checking its trainer; settles runs whose trainer is gone."""

    def request_stop(self, run: RunDir, reason: str) -> None:
        """Ask the trainer to stop gracefully (save its adapter), forcing it later if needed."""

    def check(self, wanted: Parallelism) -> str | None:
        """Why a job asking for `wanted` can never run here (None when it can), at submit."""


def run_parallelism(run: RunDir) -> Parallelism:
    """The parallelism a run's spec asks for (validated at submit; a bad old spec runs as one)."""
    try:
        return parallelism(run.read_spec().get("options") or {})
    except (ParallelismError, FileNotFoundError):
        return Parallelism()


@dataclass(frozen=True)
class ExecutorSettings:
    python: str
    torch_threads: int | None = None
    term_after_s: float = 5.0  # SIGTERM this long after a stop request the trainer ignores
    kill_after_s: float = 30.0  # SIGKILL this long after the stop request: the last resort
    heartbeat_timeout_s: float = 300.0
    env: tuple[tuple[str, str], ...] = ()


class SubprocessExecutor:
    def __init__(self, runs_dir: Path, queue: RunQueue, settings: ExecutorSettings) -> None:
        self.runs_dir = runs_dir
        self.queue = queue
        self.settings = settings
        self._children: dict[int, subprocess.Popen[bytes]] = {}  # ours, to learn exit codes

    def run_dir(self, run_id: str) -> RunDir:
        return RunDir(self.runs_dir / run_id)

    def pump(self) -> None:
        """Reconcile active runs (freeing slots of finished ones), then start waiting runs."""
        for run_id in self.queue.active():
            run = self.run_dir(run_id)
            if run.exists():
                self.reconcile(run)
            else:  # its directory was deleted: the slot is free
                self.queue.release(run_id)
        free = self.queue.free_slots()
        for run_id in self.queue.waiting():
            run = self.run_dir(run_id)
            status = run.read_status()
            if status is not None and status.state is not RunState.QUEUED:
                self.queue.dequeue(run_id)  # cancelled while waiting, or otherwise settled
                continue
            problem = self.unrunnable(run)
            if problem is not None:
                self._settle(run, RunState.FAILED, problem)
                continue
            needed = self.slots_needed(run_parallelism(run))
            if len(free) < needed:
                break  # first in, first out: nobody overtakes the head of the queue
            self.launch(run, free[:needed])
            free = free[needed:]

    def unrunnable(self, run: RunDir) -> str | None:
        """Why a queued run can no longer start here: the host lost GPUs since the submit, or
        the gateway switched from the Ray executor with a multi-node job still queued."""
        try:
            wanted = parallelism(run.read_spec().get("options") or {})
        except ParallelismError as exc:
            return str(exc)
        except FileNotFoundError:
            return None
        return self.check(wanted)

    def slots_needed(self, wanted: Parallelism) -> int:
        return wanted.gpus if self.queue.has_gpus and wanted.gpus > 1 else 1

    def check(self, wanted: Parallelism) -> str | None:
        if wanted.gpus <= 1:
            return None
        if not self.queue.has_gpus:
            return (f"num_gpus {wanted.gpus}: this host has no GPU (for {wanted.gpus} CPU "
                    f"processes set num_gpus 0 and num_processes {wanted.gpus})")
        if wanted.gpus > len(self.queue.slots):
            return (f"num_gpus {wanted.gpus}: this host has {len(self.queue.slots)} GPU slots "
                    f"({','.join(self.queue.slots)})")
        return None

    def launch(self, run: RunDir, slots: list[str]) -> None:
        wanted = run_parallelism(run)
        slot = ",".join(slots)
        if wanted.data_parallel:
            command = launcher_command(self.settings.python, run.path, wanted.processes)
        else:
            command = trainer_command(self.settings.python, run.path)
        run.write_status(RunState.LAUNCHING)
        try:
            child = spawn(command, run.log, self._env(slot, cpu_only=wanted.on_cpu))
        except OSError as exc:
            self.queue.dequeue(run.run_id)
            run.write_status(RunState.FAILED, reason=f"could not start the trainer: {exc}")
            return
        self._children[child.pid] = child
        ref = ProcessRef(child.pid, start_ticks(child.pid))
        write_json_atomic(run.launch_file, {**ref.to_json(), "slot": slot,
                                            "processes": wanted.processes,
                                            "launched_at": time.time()})
        self.queue.activate(run.run_id, slots)
        if wanted.data_parallel:
            where = "CPU, gloo" if wanted.on_cpu or slot == CPU_SLOT else f"GPUs {slot}, NCCL"
            message = (f"data-parallel launcher started (pid {child.pid}): "
                       f"{wanted.processes} trainer processes ({where})")
        else:
            message = f"trainer started (pid {child.pid}, slot {slot})"
        run.event("launched", message, pid=child.pid, slot=slot, processes=wanted.processes)

    def _env(self, slot: str, cpu_only: bool = False) -> dict[str, str]:
        """`slot`: a GPU id, several joined by commas, or CPU_SLOT; `cpu_only` for num_gpus 0."""
        env = dict(self.settings.env)
        env["CUDA_VISIBLE_DEVICES"] = "" if slot == CPU_SLOT or cpu_only else slot
        env["TOKENIZERS_PARALLELISM"] = "false"
        if self.settings.torch_threads:
            threads = str(self.settings.torch_threads)
            env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        return env

    def reconcile(self, run: RunDir) -> RunStatus:
        """The run's status after checking its process; settles runs whose trainer is gone."""
        status = run.read_status() or run.write_status(RunState.QUEUED)
        if status.state.terminal:
            self.queue.release(run.run_id)
            return status
        if not status.state.active:
            self._requeue_if_lost(run)
            return status
        launch = read_json(run.launch_file)
        if launch is None:
            return self._settle(run, RunState.FAILED, "trainer launch was interrupted")
        ref = ProcessRef(int(launch["pid"]), launch.get("start_ticks"))
        child = self._children.get(ref.pid)
        if child is not None:
            child.poll()  # reap a finished child so it does not linger as a zombie
        if is_alive(ref):
            return self._watch_live(run, ref, status)
        return self._settle_dead(run, ref, child)

    def _requeue_if_lost(self, run: RunDir) -> None:
        """A submit that crashed between writing the status and the queue marker is resumed."""
        if not self.queue.is_waiting(run.run_id):
            self.queue.enqueue(run.run_id, int(run.read_spec().get("seq") or time.time_ns()))

    def _settle_dead(
        self, run: RunDir, ref: ProcessRef, child: subprocess.Popen[bytes] | None
    ) -> RunStatus:
        latest = run.read_status()
        if latest is not None and latest.state.terminal:  # it finished as we looked
            self.queue.release(run.run_id)
            return latest
        self._children.pop(ref.pid, None)
        if child is not None:
            # /proc may show the zombie before poll() could reap it; wait() collects the status.
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
        how = describe_exit(child.returncode if child is not None else None)
        if run.stop_requested():
            return self._settle(run, RunState.CANCELLED,
                                f"trainer was stopped forcibly ({how}); no adapter was saved")
        beat = read_json(run.heartbeat) or {}
        age = f"{time.time() - beat['at']:.0f}s ago" if beat.get("at") else "never"
        processes = int((read_json(run.launch_file) or {}).get("processes") or 1)
        what = (f"data-parallel launcher {ref.pid} (and its {processes} trainers)"
                if processes > 1 else f"trainer process {ref.pid}")
        reason = (f"{what} ended without a final status: {how}; "
                  f"last heartbeat {age} at step {beat.get('step')}")
        tail = run.log_tail(3)
        if tail:
            reason += f"; last log lines: {tail}"
        return self._settle(run, RunState.FAILED, reason)

    def _settle(self, run: RunDir, state: RunState, reason: str) -> RunStatus:
        return settle(self.queue, run, state, reason)

    def _watch_live(self, run: RunDir, ref: ProcessRef, status: RunStatus) -> RunStatus:
        stop = read_json(run.stop_file)
        if stop is not None:
            self._escalate(run, ref, stop)
            return status
        beat = read_json(run.heartbeat)
        stale = beat is not None and time.time() - beat["at"] > self.settings.heartbeat_timeout_s
        if stale:
            signal_group(ref, signal.SIGKILL)
            reason = (f"trainer stopped responding (no heartbeat for "
                      f"{self.settings.heartbeat_timeout_s:.0f}s) and was killed")
            return self._settle(run, RunState.FAILED, reason)
        return status

    def _escalate(self, run: RunDir, ref: ProcessRef, stop: dict[str, Any]) -> None:
        """Stop file first; SIGTERM if ignored; SIGKILL after the grace period."""
        waited = time.time() - float(stop["requested_at"])
        if waited >= self.settings.kill_after_s and not stop.get("kill_sent_at"):
            signal_group(ref, signal.SIGKILL)
            stop["kill_sent_at"] = time.time()
            run.event("sigkill", f"trainer still running {waited:.0f}s after the stop request: "
                      "SIGKILL", level="warning")
        elif waited >= self.settings.term_after_s and not stop.get("term_sent_at"):
            signal_group(ref, signal.SIGTERM)
            stop["term_sent_at"] = time.time()
            run.event("sigterm", "trainer still running after the stop request: SIGTERM")
        else:
            return
        write_json_atomic(run.stop_file, stop)

    def request_stop(self, run: RunDir, reason: str) -> None:
        if run.request_stop(reason):
            run.event("stop-requested", f"stop requested: {reason}")


def settle(queue: RunQueue, run: RunDir, state: RunState, reason: str) -> RunStatus:
    """End a run the trainer could not end itself (dead, lost, never launched): free its slot,
    keep the checkpoints it left, and say why in its status and events."""
    queue.release(run.run_id)
    queue.dequeue(run.run_id)
    result = {"checkpoints": sorted(str(p) for p in run.output_dir.glob("checkpoint-*"))}
    status = run.write_status(state, reason=reason, result=result)
    run.event(f"settled-{state.value}", reason,
              level="error" if state is RunState.FAILED else "warning")
    return status
