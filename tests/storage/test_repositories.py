"""Repository behaviour that the services rely on, on both databases."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from storage.database import Database
from storage.repositories.jobs import JobRepository
from storage.repositories.metrics import MetricRepository
from storage.repositories.outbox import OutboxRepository
from storage.tables import MetricPoint, Notification
from tests.storage.conftest import NOW


def test_times_come_back_aware_utc(db: Database) -> None:
    with db.session() as session:
        job = JobRepository(session).get("job_1")
    assert job is not None
    assert job.created_at == NOW
    assert job.created_at.tzinfo is not None


def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive"), db.session() as session:
        job = JobRepository(session).get("job_1")
        assert job is not None
        job.updated_at = datetime(2026, 1, 1)
        session.add(job)


def test_metric_merge_joins_train_and_eval_records_of_a_step(db: Database) -> None:
    with db.session() as session:
        repo = MetricRepository(session)
        repo.merge(MetricPoint(job_id="job_1", step=10, train_loss=1.5, created_at=NOW))
        repo.merge(MetricPoint(job_id="job_1", step=10, eval_loss=1.7, created_at=NOW))
        repo.merge(MetricPoint(job_id="job_1", step=10, train_loss=1.5, created_at=NOW))
    with db.session() as session:
        (point,) = MetricRepository(session).page("job_1", after_step=None, limit=10)
    assert (point.train_loss, point.eval_loss) == (1.5, 1.7)


def test_metric_merge_many_matches_merge_one_by_one(db: Database) -> None:
    """One poll's batch: a train and an eval record of one step in the same batch, a step
    stored by an earlier poll, a replay, and more steps than one IN (...) chunk holds."""
    def point(step: int, **values: float) -> MetricPoint:
        return MetricPoint(job_id="job_1", step=step, created_at=NOW, **values)

    with db.session() as session:
        MetricRepository(session).merge(point(3, train_loss=2.0, extra={"a": 1.0}))
    batch = [point(3, eval_loss=2.5, extra={"b": 2.0}), point(4, train_loss=1.9),
             point(4, eval_loss=2.4), point(3, train_loss=2.0)]
    batch += [point(step, train_loss=1.0) for step in range(5, 1205)]
    with db.session() as session:
        MetricRepository(session).merge_many("job_1", batch)
    with db.session() as session:
        MetricRepository(session).merge_many("job_1", batch[:3])  # replayed poll
    with db.session() as session:
        points = MetricRepository(session).page("job_1", after_step=None, limit=2000)
    assert [p.step for p in points] == list(range(3, 1205))
    assert (points[0].train_loss, points[0].eval_loss, points[0].extra) == (
        2.0, 2.5, {"a": 1.0, "b": 2.0})
    assert (points[1].train_loss, points[1].eval_loss) == (1.9, 2.4)


def test_outbox_dedupe_key_is_queued_once(db: Database) -> None:
    def note() -> Notification:
        return Notification(dedupe_key="job_1:x", job_id="job_1", kind="status",
                            payload={"text": "hi"}, created_at=NOW)

    with db.session() as session:
        assert OutboxRepository(session).add_once(note()) is not None
    with db.session() as session:
        assert OutboxRepository(session).add_once(note()) is None
        assert len(OutboxRepository(session).for_job("job_1")) == 1


def test_due_for_poll_honours_next_poll_at(db: Database) -> None:
    with db.session() as session:
        repo = JobRepository(session)
        job = repo.get("job_1")
        assert job is not None
        job.next_poll_at = NOW + timedelta(seconds=30)
        session.add(job)
    with db.session() as session:
        repo = JobRepository(session)
        assert repo.due_for_poll(statuses=["queued"], now=NOW, limit=10) == []
        later = NOW + timedelta(seconds=31)
        assert [j.id for j in repo.due_for_poll(statuses=["queued"], now=later, limit=10)] == [
            "job_1"]
