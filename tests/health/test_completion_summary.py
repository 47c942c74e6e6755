"""When a job finishes, one summary is posted (outbox, once) with its final and best losses,
best step and findings, and its loss chart; the same summary is served over HTTP."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storage.repositories.outbox import OutboxRepository
from tests.conftest import LiveApi, run_until, tick
from tests.fakes.scripted_backend import ScriptedBackend
from tunebridge import completion_summary
from tunebridge.console_notifier import ConsoleNotifier
from tunebridge.runtime import Runtime, build_runtime
from tunebridge.settings import Settings

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def console() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def runtime(settings: Settings, scripted: ScriptedBackend, console: io.StringIO
            ) -> Iterator[Runtime]:
    """The runtime `serve` builds, with the console notifier writing to a buffer."""
    holder: dict[str, Runtime] = {}
    notifier = ConsoleNotifier(
        settings.data_dir / "console-notifications.jsonl", console,
        chart_dir=settings.data_dir / "charts",
        chart=lambda job_id: completion_summary.chart_png(db=holder["rt"].db, job_id=job_id))
    holder["rt"] = rt = build_runtime(settings, backends=[scripted], notifier=notifier)
    yield rt
    rt.close()


def _finish(live: LiveApi, data: bytes, **options: Any) -> str:
    with live.client() as http:
        dataset_id = http.post("/api/datasets", content=data).json()["id"]
        response = http.post("/api/jobs", json={
            "training_dataset_id": dataset_id, "base_model": "m", "backend": "scripted",
            "options": {"scripted_step_seconds": 0.01, **options}})
        assert response.status_code == 201, response.text
        job_id = str(response.json()["id"])
    run_until(live.runtime, job_id, {"succeeded"}, timeout=30)
    for _ in range(3):  # later rounds must not post it again
        tick(live.runtime)
    return job_id


def _summaries(live: LiveApi, job_id: str) -> list[dict[str, Any]]:
    with live.runtime.db.session() as session:
        return [dict(n.payload) for n in OutboxRepository(session).for_job(job_id)
                if n.kind == "completion_summary"]


def test_an_overfit_run_is_summarised_once_with_its_best_step_and_chart(
        live: LiveApi, console: io.StringIO, chat_jsonl: bytes) -> None:
    job_id = _finish(live, chat_jsonl, scripted_steps=60, scripted_curve="overfit")
    posted = _summaries(live, job_id)
    assert len(posted) == 1
    data = posted[0]["data"]
    # the scripted curve: train 2·e^(-step/10); eval every 5 steps, 2.2 - 0.05·step down to
    # 1.2 at step 20, then 1.2 + 0.04·(step - 20) up to 2.8 at step 60
    assert data["status"] == "succeeded" and data["final_step"] == 60
    assert data["final_train_loss"] == pytest.approx(2 * math.exp(-6))
    assert data["best_train_loss"] == pytest.approx(2 * math.exp(-6))
    assert data["best_train_step"] == 60
    assert data["final_eval_loss"] == pytest.approx(2.8)
    assert data["best_eval_loss"] == pytest.approx(1.2)
    assert (data["best_eval_step"], data["best_eval_epoch"]) == (20, 2.0)
    assert [f["kind"] for f in data["findings"]] == ["overfitting"]
    assert "best 1.2000 at step 20" in posted[0]["text"]

    printed = [line for line in console.getvalue().splitlines()
               if "Validation loss: final" in line]
    assert len(printed) == 1
    chart_line = re.search(r"loss chart: (\S+)", console.getvalue())
    assert chart_line is not None
    assert Path(chart_line.group(1)).read_bytes().startswith(PNG_MAGIC)

    with live.client() as http:
        summary = http.get(f"/api/jobs/{job_id}/summary").json()
        chart = http.get(f"/api/jobs/{job_id}/summary/chart.png")
    assert {k: summary[k] for k in data} == data
    assert chart.status_code == 200 and chart.headers["content-type"] == "image/png"
    assert chart.content.startswith(PNG_MAGIC) and len(chart.content) > 5_000


def test_a_nan_run_reports_where_the_loss_broke_and_its_best_before(
        live: LiveApi, chat_jsonl: bytes) -> None:
    job_id = _finish(live, chat_jsonl, scripted_steps=20, scripted_curve="nan")
    (posted,) = _summaries(live, job_id)
    data = posted["data"]
    assert data["final_train_loss"] is None and data["nonfinite_loss_step"] == 15
    assert data["best_train_loss"] == pytest.approx(2 * math.exp(-1.4))
    assert data["best_train_step"] == 14
    assert data["best_eval_step"] is None and data["final_eval_loss"] is None
    assert "diverging" in [f["kind"] for f in data["findings"]]
    assert "became NaN/inf at step 15" in posted["text"]


def test_no_summary_and_no_chart_before_any_loss(live: LiveApi, chat_jsonl: bytes) -> None:
    with live.client() as http:
        dataset_id = http.post("/api/datasets", content=chat_jsonl).json()["id"]
        job_id = http.post("/api/jobs", json={
            "training_dataset_id": dataset_id, "base_model": "m",
            "backend": "scripted"}).json()["id"]
        summary = http.get(f"/api/jobs/{job_id}/summary").json()
        chart = http.get(f"/api/jobs/{job_id}/summary/chart.png")
        missing = http.get("/api/jobs/job_nope/summary")
    assert summary["status"] == "queued" and summary["final_step"] is None
    assert chart.status_code == 404 and missing.status_code == 404
    assert _summaries(live, job_id) == []
