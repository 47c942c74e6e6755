"""Runs local-backend trainers as Ray Jobs, for teams that outgrow one machine.

Ray only starts, watches and stops the trainer process (`python -m backends.local.train
--run-dir DIR`, the same entry point as on this host; for a data-parallel job on one node the
launcher, `python -m backends.local.launch --nproc-per-node N --run-dir DIR`, with
`entrypoint_num_gpus` N, so Ray places all N ranks on one node). A job with `num_nodes` > 1 runs
`python -m backends.local.ray_train`, a driver that reserves no GPU itself and has Ray Train
place one worker per rank over the cluster's nodes. Everything else still goes through the run
directory: spec, status, heartbeat, stop file and the metric and event streams that LocalBackend
reads by byte offset. So the runs directory must be on storage that the gateway and every Ray
worker mount at the same path (one host's disk, NFS, a shared volume); docs/deploy.md says how.

Ray keeps job records in the head's memory. Our run files and database stay the source of truth:
a job Ray no longer knows (its head restarted) is failed with that reason, never left running.
`ray` itself is imported when the first request is made, never by a gateway that does not use it.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from backends.local.distributed import Parallelism
from backends.local.executor import ExecutorSettings, settle
from backends.local.process import launcher_command
from backends.local.queue import RunQueue
from backends.local.ray_errors import (
    AlreadyExists,
    NotFound,
    RayRejected,
    RayUnavailable,
    classify,
)
from backends.local.ray_train import describe, driver_command, job_parallelism
from backends.local.runs import RunDir, RunState, RunStatus, read_json, write_json_atomic

RAY_SLOT = "ray"  # the queue's marker for "held by Ray": Ray, not our slots, places the trainer
MAX_REASON_CHARS = 1500


@dataclass(frozen=True)
class RayConfig:
    address: str  # the Ray dashboard (job server) URL, e.g. http://ray-head:8265
    token: str | None = field(default=None, repr=False)  # never printed
    stop_wait_s: int = 120  # RAY_JOB_STOP_WAIT_TIME_S: SIGTERM, then SIGKILL after this long
    gpus_per_job: float = 1.0  # entrypoint_num_gpus when a job does not set `num_gpus`
    python: str = "python"  # the interpreter on the Ray workers (the trainer image's)
    # Ray's client sets no timeout: a job server that takes the connection and never answers
    # would hold a poll, and its thread, forever. (connect, read) seconds.
    request_timeout_s: tuple[float, float] = (10.0, 60.0)
    status_max_age_s: float = 1.0  # one tick polls every job; ask Ray once per job per tick


class RayStatus(StrEnum):
    """Ray's JobStatus values (ray.job_submission.JobStatus), without importing ray."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in (RayStatus.STOPPED, RayStatus.SUCCEEDED, RayStatus.FAILED)


def trainer_entrypoint(python: str, run_dir: Path, processes: int = 1) -> str:
    """The shell command Ray runs: the trainer, or the data-parallel launcher of N trainers."""
    if processes > 1:
        return shlex.join(launcher_command(python, run_dir, processes))
    return shlex.join([python, "-m", "backends.local.train", "--run-dir", str(run_dir)])


def ended_without_status(
    status: RayStatus, stop_requested: bool, submission_id: str, run_dir: Path, message: str,
    stop_wait_s: int,
) -> tuple[RunState, str]:
    """Our verdict when Ray says a job ended but the trainer wrote no final status."""
    if status is RayStatus.STOPPED and stop_requested:
        return RunState.CANCELLED, (
            f"Ray stopped the trainer before it saved an adapter (it did not finish within "
            f"RAY_JOB_STOP_WAIT_TIME_S={stop_wait_s}s)")
    if status is RayStatus.STOPPED:
        return RunState.FAILED, f"Ray job {submission_id} was stopped outside tunebridge"
    if status is RayStatus.SUCCEEDED:
        return RunState.FAILED, (
            f"Ray job {submission_id} exited 0 but the trainer left no final status in "
            f"{run_dir}: the runs directory must be on storage shared by the gateway and the "
            f"Ray workers, at the same path (docs/deploy.md)")
    tail = message[-MAX_REASON_CHARS:] if message else "no message from Ray"
    return RunState.FAILED, f"Ray job {submission_id} failed: {tail}"


class RayExecutor:
    """Same interface as SubprocessExecutor (pump, reconcile, request_stop); callers hold the
    queue lock. Every waiting run is submitted at once: Ray queues jobs until resources free."""

    multi_node = True  # LocalBackend accepts num_nodes > 1: Ray Train places the ranks

    def __init__(self, runs_dir: Path, queue: RunQueue, settings: ExecutorSettings,
                 config: RayConfig) -> None:
        self.runs_dir = runs_dir
        self.queue = queue
        self.settings = settings
        self.config = config
        self._client: Any = None
        self._infos: dict[str, tuple[float, Any]] = {}

    def run_dir(self, run_id: str) -> RunDir:
        return RunDir(self.runs_dir / run_id)

    # -- interface ---------------------------------------------------------------------------

    def pump(self) -> None:
        """Submit waiting runs. Active runs are reconciled when they are polled (no slots)."""
        for run_id in self.queue.waiting():
            run = self.run_dir(run_id)
            status = run.read_status()
            if not run.exists() or (status is not None and status.state is not RunState.QUEUED):
                self.queue.dequeue(run_id)  # deleted, cancelled while waiting, or settled
                continue
            self.launch(run)

    def launch(self, run: RunDir) -> None:
        run.write_status(RunState.PLACING)  # before submitting: the trainer writes after us
        try:
            self._submit(run)
        except RayRejected as exc:
            self._settle(run, RunState.FAILED, str(exc))
        except RayUnavailable:
            run.write_status(RunState.QUEUED)  # stays in the queue; the next pump retries
            raise

    def reconcile(self, run: RunDir) -> RunStatus:
        status = run.read_status() or run.write_status(RunState.QUEUED)
        if status.state.terminal:
            self.queue.release(run.run_id)
            return status
        if not status.state.active:
            if not self.queue.is_waiting(run.run_id):
                self.queue.enqueue(run.run_id, int(run.read_spec().get("seq") or time.time_ns()))
            return status
        launch = read_json(run.launch_file)
        if launch is None:  # the gateway died between submitting and recording the submission
            self._submit(run)
            return run.read_status() or status
        submission_id = str(launch["submission_id"])
        info = self._info(submission_id)
        latest = run.read_status() or status  # read after Ray: a finished trainer wrote it
        if latest.state.terminal:
            self.queue.release(run.run_id)
            return latest
        if info is None:
            return self._forgotten(run, submission_id)
        ray_status = RayStatus(str(info.status))
        if ray_status.terminal:
            state, reason = ended_without_status(
                ray_status, run.stop_requested(), submission_id, run.path,
                str(info.message or ""), self.config.stop_wait_s)
            return self._settle(run, state, reason)
        return self._watch_live(run, submission_id, latest)

    def request_stop(self, run: RunDir, reason: str) -> None:
        """The stop file (read by the trainer between steps), then Ray's stop: SIGTERM, which
        the trainer also treats as a stop request, and SIGKILL after `stop_wait_s`."""
        if run.request_stop(reason):
            run.event("stop-requested", f"stop requested: {reason}")
        self._send_stop(run)

    def check(self, wanted: Parallelism) -> str | None:
        """Ray places the job; one that no node can hold waits until RAY_JOB_START_TIMEOUT (a
        multi-node job's workers: until they fit, or the job is cancelled)."""
        return None

    # -- Ray calls ---------------------------------------------------------------------------

    def _submit(self, run: RunDir) -> None:
        spec = run.read_spec()
        submission_id = str(spec.get("job_id") or run.run_id)
        wanted = job_parallelism(spec)
        gpus = float((spec.get("options") or {}).get("num_gpus", self.config.gpus_per_job))
        if wanted.nodes > 1:  # Ray Train's workers hold the GPUs; the driver needs none
            entrypoint = shlex.join(driver_command(self.config.python, run.path, wanted))
            entrypoint_gpus = 0.0
        else:
            entrypoint = trainer_entrypoint(self.config.python, run.path, wanted.processes)
            entrypoint_gpus = gpus
        adopted = False
        try:
            self._call(
                "submit_job", entrypoint=entrypoint, submission_id=submission_id,
                entrypoint_num_gpus=entrypoint_gpus,
                runtime_env={"env_vars": self._env(cpu_only=gpus == 0)},
                metadata={"tunebridge_job_id": submission_id, "tunebridge_run_id": run.run_id,
                          "tunebridge_run_dir": str(run.path)})
        except AlreadyExists:
            adopted = self._adoptable(run, submission_id)
            if not adopted:
                return
        write_json_atomic(run.launch_file, {"executor": "ray", "submission_id": submission_id,
                                            "num_gpus": gpus, "processes": wanted.processes,
                                            "nodes": wanted.nodes, "launched_at": time.time()})
        self.queue.activate(run.run_id, RAY_SLOT)
        verb = "adopted the existing Ray job" if adopted else "submitted to Ray as job"
        ranks = f", {wanted.processes} data-parallel processes" if wanted.data_parallel else ""
        shape = describe(wanted) if wanted.nodes > 1 else f"{gpus:g} GPU{ranks}"
        run.event("launched", f"{verb} {submission_id} ({shape}); Ray starts the "
                  "trainer when its resources are free", submission_id=submission_id,
                  adopted=adopted, processes=wanted.processes, nodes=wanted.nodes)

    def _adoptable(self, run: RunDir, submission_id: str) -> bool:
        """A retried submit finds its own job (same run directory) and adopts it; a job of the
        same id from another deployment is never taken over."""
        info = self._info(submission_id, fresh=True)
        owner = ((info.metadata or {}) if info is not None else {}).get("tunebridge_run_dir")
        if owner == str(run.path):
            return True
        self._settle(run, RunState.FAILED, f"Ray already has a job {submission_id} that "
                     f"belongs to another run directory ({owner}); not submitting it twice")
        return False

    def _info(self, submission_id: str, fresh: bool = False) -> Any:
        """Ray's JobDetails, or None when Ray does not know the job (404)."""
        cached = self._infos.get(submission_id)
        if not fresh and cached and time.monotonic() - cached[0] < self.config.status_max_age_s:
            return cached[1]
        try:
            info = self._call("get_job_info", submission_id)
        except NotFound:
            info = None
        self._infos[submission_id] = (time.monotonic(), info)
        return info

    def _send_stop(self, run: RunDir) -> None:
        launch = read_json(run.launch_file)
        stop = read_json(run.stop_file) or {}
        if launch is None or stop.get("ray_stop_sent_at"):
            return
        with contextlib.suppress(NotFound):  # reconcile reports a forgotten job
            self._call("stop_job", str(launch["submission_id"]))
        stop["ray_stop_sent_at"] = time.time()
        write_json_atomic(run.stop_file, stop)
        self._infos.pop(str(launch["submission_id"]), None)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """One job-server request, its failures turned into our vocabulary."""
        from ray.exceptions import AuthenticationError

        try:
            client = self._connect()
            return getattr(client, method)(*args, **kwargs)
        # requests' ConnectionError and timeouts are OSErrors; HTTP errors are RuntimeErrors
        except (RuntimeError, OSError, AuthenticationError) as exc:
            raise classify(exc, self.config.address) from exc

    def _connect(self) -> Any:
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            timeout = self.config.request_timeout_s

            class TimedClient(JobSubmissionClient):
                def _do_request(self, method: str, endpoint: str, **kwargs: Any) -> Any:
                    kwargs.setdefault("timeout", timeout)  # passed on to requests.request
                    return super()._do_request(method, endpoint, **kwargs)

            token = self.config.token
            headers = {"Authorization": f"Bearer {token}"} if token else None
            self._client = TimedClient(self.config.address, headers=headers)
        return self._client

    # -- settling ----------------------------------------------------------------------------

    def _env(self, cpu_only: bool = False) -> dict[str, str]:
        """`cpu_only`: a job that asks for no GPU trains on CPU even on a GPU node (as on one
        host), which also keeps CPU data-parallel ranks off a GPU they would have to share."""
        env = dict(self.settings.env)
        if cpu_only:
            env["CUDA_VISIBLE_DEVICES"] = ""
        env.update(TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
                   RAY_JOB_STOP_WAIT_TIME_S=str(int(self.config.stop_wait_s)))
        if self.settings.torch_threads:
            threads = str(self.settings.torch_threads)
            env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        return env

    def _watch_live(self, run: RunDir, submission_id: str, status: RunStatus) -> RunStatus:
        if run.stop_requested():
            self._send_stop(run)  # a stop that could not reach Ray earlier is sent now
            return status
        beat = read_json(run.heartbeat)
        if beat is not None and time.time() - beat["at"] > self.settings.heartbeat_timeout_s:
            self._call("stop_job", submission_id)
            return self._settle(run, RunState.FAILED, (
                f"trainer stopped responding (no heartbeat for "
                f"{self.settings.heartbeat_timeout_s:.0f}s); Ray job {submission_id} stopped"))
        return status

    def _forgotten(self, run: RunDir, submission_id: str) -> RunStatus:
        run.request_stop("Ray forgot the job")  # should a trainer survive somewhere, it stops
        beat = read_json(run.heartbeat) or {}
        age = f"{time.time() - beat['at']:.0f}s ago" if beat.get("at") else "never"
        return self._settle(run, RunState.FAILED, (
            f"Ray no longer knows job {submission_id}: the Ray head at {self.config.address} "
            f"restarted or lost its job records (Ray keeps them in memory), so the trainer is "
            f"gone; last heartbeat {age} at step {beat.get('step')}"))

    def _settle(self, run: RunDir, state: RunState, reason: str) -> RunStatus:
        return settle(self.queue, run, state, reason)
