"""The database goes away under the live gateway (simulated at the engine: PostgreSQL cannot be
restarted here). Requests answer 503 with Retry-After, never 500; a request cut off half-way
leaves nothing half-committed, and its retry with the same Idempotency-Key succeeds once.

The outage is test infrastructure: SQLAlchemy event listeners installed by the test on the
app's real engine, not a hook in the product."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError

from tests.conftest import LiveApi, chat_line, jsonl
from tests.reliability.stack import TABLES
from tunebridge.runtime import Runtime


class Outage:
    """While armed, the next `healthy` checkouts work and every later one fails to connect."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.healthy: int | None = None
        self.refused = 0
        event.listen(engine, "checkout", self._checkout)
        event.listen(engine, "do_connect", self._connect)

    def arm(self, healthy: int = 0) -> None:
        self.healthy = healthy
        self.engine.dispose()  # pooled connections must reconnect, and fail

    def clear(self) -> None:
        self.healthy = None

    def _checkout(self, *_: Any) -> None:
        if self.healthy is None:
            return
        if self.healthy > 0:
            self.healthy -= 1
            return
        raise DisconnectionError("injected outage")  # the pool reconnects: see _connect

    def _connect(self, dialect: Any, *_: Any) -> None:
        if self.healthy == 0:
            self.refused += 1
            raise dialect.dbapi.OperationalError("injected outage: database unavailable")

    def remove(self) -> None:
        event.remove(self.engine, "checkout", self._checkout)
        event.remove(self.engine, "do_connect", self._connect)


@pytest.fixture
def outage(live: LiveApi) -> Iterator[Outage]:
    injected = Outage(live.runtime.db.engine)
    yield injected
    injected.remove()


def _counts(runtime: Runtime) -> dict[str, int]:
    from sqlmodel import func, select

    with runtime.db.session() as session:
        return {t.__tablename__: session.exec(select(func.count()).select_from(t)).one()  # type: ignore[attr-defined]
                for t in TABLES}


def _job_body(dataset_id: str) -> dict[str, Any]:
    return {"training_dataset_id": dataset_id, "base_model": "m", "backend": "scripted"}


def test_every_route_answers_503_while_the_database_is_down(
        live: LiveApi, outage: Outage, chat_jsonl: bytes) -> None:
    with live.client() as http:
        dataset_id = http.post("/api/datasets", content=chat_jsonl).json()["id"]
        job_id = http.post("/api/jobs", json=_job_body(dataset_id)).json()["id"]
        before = _counts(live.runtime)
        outage.arm()
        answers = [
            http.get("/api/jobs"), http.get(f"/api/jobs/{job_id}"),
            http.get(f"/api/jobs/{job_id}/events"), http.post(f"/api/jobs/{job_id}/cancel"),
            http.post("/api/jobs", json=_job_body(dataset_id)),
            http.post("/api/datasets", content=jsonl([chat_line("new", "data")])),
            http.post("/api/jobs", json=_job_body(dataset_id), headers={"Idempotency-Key": "k"}),
            http.get("/v1/fine_tuning/jobs"), http.get("/readyz"),
        ]
        assert [a.status_code for a in answers] == [503] * len(answers), [
            (a.request.url.path, a.status_code, a.text[:200]) for a in answers]
        assert all(a.headers.get("retry-after") for a in answers[:-1])
        assert http.get("/healthz").status_code == 200  # alive, just not ready
        assert outage.refused > 0
        outage.clear()
        assert _counts(live.runtime) == before
        assert http.get(f"/api/jobs/{job_id}").json()["status"] == "queued"


def test_cut_off_mid_request_nothing_half_committed_and_the_retry_succeeds_once(
        live: LiveApi, outage: Outage) -> None:
    statuses: list[int] = []
    with live.client() as http:
        dataset_id = http.post("/api/datasets", content=jsonl([chat_line("q", "a")])).json()["id"]
        for healthy in range(8):  # fail at the 1st, 2nd, ... database use of the request
            data = jsonl([chat_line(f"q{healthy}-{i}", "a") for i in range(5)])
            outage.arm(healthy)
            upload = http.post("/api/datasets", content=data)
            create = http.post("/api/jobs", json=_job_body(dataset_id),
                               headers={"Idempotency-Key": f"cut-{healthy}"})
            outage.clear()
            statuses += [upload.status_code, create.status_code]
            assert upload.status_code in (201, 503) and create.status_code in (201, 503), (
                upload.text, create.text)
            retry = http.post("/api/jobs", json=_job_body(dataset_id),
                              headers={"Idempotency-Key": f"cut-{healthy}"})
            assert retry.status_code == 201, retry.text
            if create.status_code == 201:
                assert retry.headers.get("idempotent-replayed") == "true"
            again = http.post("/api/datasets", content=data)
            assert again.status_code in (200, 201)
            stored = http.get(f"/api/datasets/{again.json()['id']}")
            assert stored.status_code == 200 and stored.json()["num_examples"] == 5
        jobs = http.get("/api/jobs", params={"limit": 100}).json()["data"]
    assert len(jobs) == 8, "a retried request created a second job, or lost one"
    assert 503 in statuses and 201 in statuses
    blobs = live.runtime.settings.blob_dir
    assert len(list(blobs.rglob("*.jsonl"))) == 9  # every dataset once, none half-written
