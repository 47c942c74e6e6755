"""`metrics_store.merged` (the poll's series, built in memory before its write transaction)
reads exactly like the rows `store_samples` leaves in the database, on both databases."""

from __future__ import annotations

import math
from typing import Any

from backends.base import MetricSample
from storage.database import Database
from storage.repositories.metrics import MetricRepository
from storage.tables import MetricPoint
from tests.storage.conftest import NOW
from tunebridge.metrics_store import merged, store_samples, to_points

FIELDS = ("step", "epoch", "train_loss", "eval_loss", "grad_norm", "learning_rate",
          "token_accuracy", "eval_token_accuracy", "extra")


def _rows(points: list[MetricPoint]) -> list[dict[str, Any]]:
    return [{name: getattr(p, name) for name in FIELDS} for p in points]


def _stored(db: Database) -> list[MetricPoint]:
    with db.session() as session:
        return MetricRepository(session).page("job_1", after_step=None, limit=10_000)


def test_merged_reads_like_the_stored_rows_after_the_poll(db: Database) -> None:
    first = [MetricSample(step=s, train_loss=2.0 - s / 100, grad_norm=1.0, epoch=s / 50,
                          extra={"total_steps": 100.0}) for s in range(1, 31)]
    first.append(MetricSample(step=31, train_loss=math.nan, learning_rate=1e-4))
    with db.session() as session:
        store_samples(session, "job_1", first, NOW)
    # The next poll: an eval of a stored step, a train and an eval record of one new step,
    # a replayed sample, an infinite gradient norm, new extras, and new steps.
    second = [MetricSample(step=30, eval_loss=1.9, extra={"eval_runtime": 3.0}),
              MetricSample(step=32, train_loss=1.6),
              MetricSample(step=32, eval_loss=1.8, eval_token_accuracy=0.5),
              MetricSample(step=31, train_loss=math.nan, learning_rate=1e-4),
              MetricSample(step=33, grad_norm=math.inf, token_accuracy=0.4)]
    second += [MetricSample(step=s, train_loss=1.5) for s in range(34, 700)]
    before = _stored(db)
    expected = merged(before, to_points("job_1", second, NOW))
    assert _rows(_stored(db)) == _rows(before), "merged() changed the rows it was given"
    with db.session() as session:
        store_samples(session, "job_1", second, NOW)
    assert _rows(expected) == _rows(_stored(db))


def test_merged_leaves_the_new_points_alone_too() -> None:
    new = to_points("job_1", [MetricSample(step=1, train_loss=1.0),
                              MetricSample(step=1, eval_loss=2.0)], NOW)
    (point,) = merged([], new)
    assert (point.train_loss, point.eval_loss) == (1.0, 2.0)
    assert (new[0].eval_loss, new[1].train_loss) == (None, None)
