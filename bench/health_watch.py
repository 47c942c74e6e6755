"""The health watch's cost over one long run: pacing vs analysing on every poll.

A 10,000-step run is polled every 10 simulated seconds, 100 new steps a poll (an eval every
1,000 steps), through the poller's real `record_update` on SQLite: the stored points are reread
and the detector rerun (before the write transaction, see health_watch.assess). The baseline
analyses on every poll (what the watch did before pacing); the paced watch analyses short series
every poll and long ones at most once a minute, at once on an eval, NaN or exploding gradient.
Both runs must end with the same findings at the same steps.

    .venv/bin/python bench/health_watch.py [--steps 10000] [--per-poll 100]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backends.base import MetricSample, RemoteStatus, Update  # noqa: E402
from storage.repositories.events import JobEventRepository  # noqa: E402
from tests.conftest import stored_dataset  # noqa: E402
from tests.fakes.manual_clock import ManualClock  # noqa: E402
from tests.fakes.scripted_backend import ScriptedBackend  # noqa: E402
from tunebridge import jobs  # noqa: E402
from tunebridge.health_watch import AnalysisPace  # noqa: E402
from tunebridge.jobs import JobRequest  # noqa: E402
from tunebridge.runtime import Runtime, build_runtime  # noqa: E402
from tunebridge.settings import Settings  # noqa: E402


def curve(steps: int, eval_every: int) -> list[MetricSample]:
    """Noisy decaying loss, linear lr with 3% warm-up, an overfitting tail in the last third."""
    rng = random.Random(8)
    warmup = math.ceil(0.03 * steps)
    out = []
    for s in range(1, steps + 1):
        lr = 2e-4 * (s / warmup if s < warmup else (steps - s) / (steps - warmup))
        ev = None
        if s % eval_every == 0:
            ev = 1.0 + 0.6 * max(0.0, s / steps - 0.6) + 0.3 * math.exp(-s / steps * 4)
        out.append(MetricSample(step=s, train_loss=2 * math.exp(-s / steps * 3) + 0.3
                                + rng.gauss(0, 0.02), eval_loss=ev, grad_norm=1 + rng.random(),
                                learning_rate=lr, epoch=s / steps * 3,
                                extra={"total_steps": float(steps)}))
    return out


def new_job(runtime: Runtime) -> str:
    dataset = stored_dataset(runtime, creator="bench")
    return jobs.create_job(
        db=runtime.db, registry=runtime.registry, clock=runtime.clock, creator="bench",
        policy=runtime.job_policy, request=JobRequest(
            training_dataset_id=dataset.id, base_model="m", backend="scripted")).job.id


def replay(runtime: Runtime, samples: list[MetricSample], per_poll: int, pace: AnalysisPace
           ) -> tuple[float, list[tuple[str, int]]]:
    job_id = new_job(runtime)
    runtime.poller.pace = pace
    clock = runtime.poller.clock = ManualClock()
    total = len(samples)
    started = time.perf_counter()
    for first in range(0, total, per_poll):
        last = first + per_poll >= total
        runtime.poller.record_update(job_id, Update(
            status=RemoteStatus.SUCCEEDED if last else RemoteStatus.RUNNING,
            metrics=samples[first:first + per_poll]))
        clock.advance(10)
    elapsed = time.perf_counter() - started
    with runtime.db.session() as session:
        events = JobEventRepository(session).page(job_id, after_id=None, limit=1000)
    return elapsed, [(e.data["kind"], e.data["step"]) for e in events
                     if e.kind == "health" and e.data]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--per-poll", type=int, default=100)
    args = parser.parse_args()
    samples = curve(args.steps, eval_every=max(1, args.steps // 10))
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, data_dir=Path(tmp), scheduler_enabled=False)
        runtime = build_runtime(settings, backends=[ScriptedBackend(Path(tmp) / "provider")])
        try:
            every_poll = AnalysisPace(small_series=sys.maxsize)
            base_s, base_found = replay(runtime, samples, args.per_poll, every_poll)
            paced_s, paced_found = replay(runtime, samples, args.per_poll, AnalysisPace())
        finally:
            runtime.close()
    polls = math.ceil(args.steps / args.per_poll)
    print(f"{args.steps} steps, {polls} polls of {args.per_poll}, SQLite")
    print(f"every poll (baseline): {base_s:7.2f} s  findings {base_found}")
    print(f"paced:                 {paced_s:7.2f} s  findings {paced_found}")
    print(f"ratio: {base_s / paced_s:.1f}x less time; same findings: {base_found == paced_found}")
    return 0 if base_found == paced_found else 1


if __name__ == "__main__":
    sys.exit(main())
