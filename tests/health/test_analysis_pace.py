"""Long series are re-analysed at most once a minute per job unless the new points cannot wait;
short ones on every poll. Findings keep their step either way; only when they are posted moves."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from backends.base import MetricSample, RemoteStatus, Update
from storage.repositories.events import JobEventRepository
from tests.conftest import LiveApi
from tests.fakes.manual_clock import ManualClock
from tunebridge.health_watch import AnalysisPace

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _samples(first: int, last: int) -> list[MetricSample]:
    """Train loss rising steadily: a `diverging` trend, with nothing urgent in any one point."""
    return [MetricSample(step=s, train_loss=1.0 + 0.05 * s, grad_norm=1.0,
                         extra={"total_steps": 100.0}) for s in range(first, last + 1)]


def test_pace_analyses_small_series_always_and_large_ones_once_a_minute() -> None:
    pace = AnalysisPace(small_series=10, every_s=60)
    quiet = _samples(1, 3)
    assert pace.due("j", samples=quiet, now=T0, final=False)  # never seen: analyse
    pace.analysed("j", points=5, now=T0, final=False)
    assert pace.due("j", samples=quiet, now=T0, final=False)  # 8 points: still small
    pace.analysed("j", points=20, now=T0, final=False)
    assert not pace.due("j", samples=quiet, now=T0 + timedelta(seconds=59), final=False)
    assert pace.due("j", samples=quiet, now=T0 + timedelta(seconds=60), final=False)
    assert pace.due("j", samples=quiet, now=T0, final=True)


def test_news_that_cannot_wait_is_analysed_at_once() -> None:
    pace = AnalysisPace(small_series=10, every_s=60)
    pace.analysed("j", points=100, now=T0, final=False)
    for urgent in (MetricSample(step=101, train_loss=math.nan),
                   MetricSample(step=101, grad_norm=math.inf),
                   MetricSample(step=101, grad_norm=250.0),
                   MetricSample(step=101, eval_loss=1.3)):
        assert pace.due("j", samples=[urgent], now=T0, final=False), urgent
    assert not pace.due("j", samples=[MetricSample(step=101, train_loss=0.9, grad_norm=3.0)],
                        now=T0, final=False)


def test_a_throttled_finding_is_posted_later_with_the_step_it_had(
        live: LiveApi, chat_jsonl: bytes) -> None:
    runtime = live.runtime
    with live.client() as http:
        dataset_id = http.post("/api/datasets", content=chat_jsonl).json()["id"]
        job_id = http.post("/api/jobs", json={
            "training_dataset_id": dataset_id, "base_model": "m",
            "backend": "scripted"}).json()["id"]
    runtime.poller.pace = AnalysisPace(small_series=10, every_s=60)
    clock = runtime.poller.clock = ManualClock()
    started = clock.now()

    def poll(samples: list[MetricSample], at: datetime) -> None:
        """One poll through the poller's real path, `at - T0` after the first."""
        clock.advance((started + (at - T0) - clock.now()).total_seconds())
        runtime.poller.record_update(job_id, Update(status=RemoteStatus.RUNNING,
                                                    metrics=samples))

    def kinds() -> list[tuple[str, int]]:
        with runtime.db.session() as session:
            events = JobEventRepository(session).page(job_id, after_id=None, limit=1000)
        return [(e.data["kind"], e.data["step"]) for e in events if e.kind == "health" and e.data]

    poll(_samples(1, 12), T0)  # analysed: first sight, nothing found yet
    assert kinds() == []
    poll(_samples(13, 40), T0 + timedelta(seconds=10))  # large and not urgent: waits
    assert kinds() == []
    poll(_samples(41, 42), T0 + timedelta(seconds=61))
    assert kinds() == [("diverging", 20)]

