"""A poll runs the health detector before its write transaction, on the series it then commits.

Other writers (API job creates, the outbox) must not wait for the analysis: SQLite has one write
lock for the whole database. What a poll writes is still all-or-nothing: a poll that dies after
its analysis stores nothing, and its retry stores every metric, finding and the completion
summary exactly once, in the transaction that moves the job to its final status."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from backends.base import MetricSample, RemoteStatus, Update
from storage.repositories.events import JobEventRepository
from storage.repositories.jobs import JobRepository
from storage.repositories.metrics import MetricRepository
from storage.repositories.outbox import OutboxRepository
from storage.tables import Notification
from tests.conftest import stored_dataset
from tunebridge import completion_summary, health_watch, jobs, runaway_watch
from tunebridge.health_watch import AnalysisPace
from tunebridge.jobs import JobRequest
from tunebridge.lifecycle import apply_transition
from tunebridge.metrics_store import store_samples
from tunebridge.runtime import Runtime
from tunebridge.status import JobStatus


def _running_job(runtime: Runtime) -> str:
    dataset = stored_dataset(runtime)
    job_id = jobs.create_job(
        db=runtime.db, registry=runtime.registry, clock=runtime.clock, creator="t",
        policy=runtime.job_policy, request=JobRequest(
            training_dataset_id=dataset.id, base_model="m", backend="scripted")).job.id
    with runtime.db.session() as session:
        job = JobRepository(session).get(job_id, for_update=True)
        assert job is not None
        job.handle, job.external_id = {"id": job_id}, f"scr-{job_id}"
        apply_transition(session, job, JobStatus.RUNNING, now=runtime.clock.now())
    return job_id


def _diverging(first: int, last: int) -> list[MetricSample]:
    """Train loss rising steadily: a `diverging` trend (found at step 20 of 100)."""
    return [MetricSample(step=s, train_loss=1.0 + 0.05 * s, grad_norm=1.0,
                         extra={"total_steps": 100.0}) for s in range(first, last + 1)]


def _notes(runtime: Runtime, job_id: str) -> list[Notification]:
    with runtime.db.session() as session:
        return OutboxRepository(session).for_job(job_id)


def _health_kinds(runtime: Runtime, job_id: str) -> list[str]:
    with runtime.db.session() as session:
        events = JobEventRepository(session).page(job_id, after_id=None, limit=1000)
    return [str((e.data or {}).get("kind")) for e in events if e.kind == "health"]


def test_the_detector_runs_while_other_writers_go_ahead(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id, other_id = _running_job(runtime), _running_job(runtime)
    analyze, waits = health_watch.analyze, []

    def analyze_while_another_writes(*args: Any, **kwargs: Any) -> Any:
        def write() -> None:  # another job's transition, which takes the write lock
            started = time.monotonic()
            with runtime.db.session() as session:
                job = JobRepository(session).get(other_id, for_update=True)
                assert job is not None
                job.next_poll_at = runtime.clock.now()
                session.add(job)
            waits.append(time.monotonic() - started)

        writer = threading.Thread(target=write)
        writer.start()
        writer.join(timeout=3)  # behind a held write lock it would wait out the busy timeout
        return analyze(*args, **kwargs)

    monkeypatch.setattr(health_watch, "analyze", analyze_while_another_writes)
    runtime.poller.record_update(job_id, Update(status=RemoteStatus.RUNNING,
                                                metrics=_diverging(1, 40), cursor="40"))
    assert len(waits) == 1 and waits[0] < 2.0, waits
    assert _health_kinds(runtime, job_id) == ["diverging"]


def test_a_poll_that_dies_after_its_analysis_stores_nothing_and_its_retry_everything_once(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = _running_job(runtime)
    runtime.poller.pace = AnalysisPace(small_series=10, every_s=3600)
    last = Update(status=RemoteStatus.SUCCEEDED, metrics=_diverging(1, 40), cursor="40",
                  result={"fine_tuned_model": "m-ft"})
    runtime.poller.record_update(job_id, Update(status=RemoteStatus.RUNNING,
                                                metrics=_diverging(1, 5), cursor="5"))
    watch = runaway_watch.watch

    def die(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the process dies here")

    monkeypatch.setattr(runaway_watch, "watch", die)
    with pytest.raises(RuntimeError):
        runtime.poller.record_update(job_id, last)
    with runtime.db.session() as session:
        job = JobRepository(session).get(job_id)
        assert job is not None and MetricRepository(session).count(job_id) == 5
    assert (job.status, job.poll_cursor) == (JobStatus.RUNNING, "5")
    assert _health_kinds(runtime, job_id) == []
    assert not [n for n in _notes(runtime, job_id) if n.kind in ("health", "completion_summary")]

    monkeypatch.setattr(runaway_watch, "watch", watch)
    runtime.poller.record_update(job_id, last)
    runtime.poller.record_update(job_id, last)  # replayed: the job has finished, nothing more
    with runtime.db.session() as session:
        job = JobRepository(session).get(job_id)
        assert job is not None and MetricRepository(session).count(job_id) == 40
    assert (job.status, job.poll_cursor) == (JobStatus.SUCCEEDED, "40")
    assert _health_kinds(runtime, job_id) == ["diverging"]
    notes = _notes(runtime, job_id)
    assert [n.kind for n in notes].count("health") == 1
    (summary,) = [n for n in notes if n.kind == "completion_summary"]
    # The summary made from the poll's in-memory series is the one the database gives.
    expected = completion_summary.for_job(db=runtime.db, job_id=job_id).as_dict()
    assert summary.payload["data"] == expected
    assert summary.payload["data"]["final_step"] == 40
    assert [f["kind"] for f in summary.payload["data"]["findings"]] == ["diverging"]


def test_steps_stored_between_the_analysis_and_the_commit_are_analysed_under_the_lock(
        runtime: Runtime) -> None:
    job_id = _running_job(runtime)
    now = runtime.clock.now()
    samples = _diverging(1, 12)
    assessment = health_watch.assess(runtime.db, job_id, samples, now=now, final=False,
                                     pace=AnalysisPace())
    assert assessment is not None and assessment.report.findings == []
    with runtime.db.session() as session:  # a writer other than this poll
        store_samples(session, job_id, _diverging(13, 40), now)
    with runtime.db.session() as session:
        job = JobRepository(session).get(job_id, for_update=True)
        assert job is not None
        store_samples(session, job_id, samples, now)
        series = health_watch.record(session, job, assessment, now=now,
                                     auto_stop_default=False)
    assert len(series.points) == 40
    assert _health_kinds(runtime, job_id) == ["diverging"]
