"""SIGKILL `tunebridge serve` at the four dangerous moments and restart it, on SQLite and
PostgreSQL, against the fake OpenAI and fake Slack servers.

The fakes hold their answer *after* acting (tests/fakes/gate.py): the provider has created the
job, or Slack has posted the message, and serve dies before it hears so. After the restart:
nothing lost, nothing duplicated, nothing half-written visible.

The local trainer's side of a crash (re-attach to the running trainer, or fail it with the exit
reason) is covered by tests/local/test_training.py::
test_trainer_survives_gateway_crash_and_is_reattached and
test_killed_trainer_fails_with_reason_and_next_in_queue_starts.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import chat_line, jsonl
from tests.reliability.stack import Stack, wait_for

pytestmark = pytest.mark.slow

EVENTS = r"/v1/fine_tuning/jobs/[\w-]+/events"


def _dataset(rows: int = 12, tag: str = "") -> bytes:
    return jsonl([chat_line(f"{tag}q{i}", f"a{i}") for i in range(rows)])


def _half_upload(stack: Stack, size: int) -> tuple[threading.Thread, threading.Event]:
    """Stream the first half of a `size`-byte body, then stall until released."""
    release = threading.Event()
    line = jsonl([chat_line("q" * 400, "a" * 400)])
    half = line * (size // 2 // len(line))

    def body() -> Iterator[bytes]:
        for start in range(0, len(half), 1 << 20):
            yield half[start:start + (1 << 20)]
        release.wait(60)
        yield half  # never reaches a live server

    def send() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the server dies under it: expected
            stack.http.post("/api/datasets", content=body(),
                            headers={"Content-Length": str(2 * len(half))})

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread, release


def _staged_bytes(stack: Stack) -> int:
    staging = stack.serve.data_dir / "blobs" / ".staging"
    return sum(p.stat().st_size for p in staging.glob("*.part")) if staging.exists() else 0


def test_kill_mid_upload_leaves_no_dataset(stack: Stack) -> None:
    stack.start()
    thread, release = _half_upload(stack, 40 << 20)
    wait_for(lambda: _staged_bytes(stack) > 8 << 20, what="half the upload staged")
    stack.restart_after_kill()
    release.set()
    thread.join(10)
    assert stack.store.datasets() == []
    blobs = stack.serve.data_dir / "blobs"
    assert list(blobs.rglob("*.jsonl")) == [], "a half-written blob became visible"
    # The same bytes upload fine afterwards and are stored exactly once.
    first = stack.upload(_dataset(tag="after-crash"))
    assert stack.upload(_dataset(tag="after-crash")) == first
    assert len(list(blobs.rglob("*.jsonl"))) == 1


def test_kill_between_provider_create_and_commit_then_mid_poll(stack: Stack) -> None:
    stack.start()
    openai = stack.openai
    dataset_id = stack.upload(_dataset())

    # 1. The provider created the job; serve dies before it stores the provider's id.
    create = openai.hold_next("POST", "/v1/fine_tuning/jobs")
    job_id = stack.create_openai_job(dataset_id)
    create.wait_arrived()
    stack.restart_after_kill()
    create.open()
    assert len(openai.world.jobs) == 1
    external = wait_for(lambda: stack.job(job_id)["external_id"], what="provider id stored")
    assert external == next(iter(openai.world.jobs))
    assert stack.provider_creates() == 1, "a second provider job was created"

    # 2. Mid-poll: the provider has six new events; serve dies while their page is in flight.
    openai.advance(external, 6)
    poll = openai.hold_next("GET", EVENTS)
    poll.wait_arrived()
    stack.restart_after_kill()
    poll.open()
    openai.run_to_end(external)
    wait_for(lambda: stack.job(job_id)["status"] == "succeeded", what="job succeeded")

    total = openai.world.jobs[external].total_steps
    metrics = stack.http.get(f"/api/jobs/{job_id}/metrics", params={"limit": 200}).json()["data"]
    assert [m["step"] for m in metrics] == list(range(1, total + 1))
    events = stack.store.events(job_id)
    assert [e.to_status for e in events if e.kind == "status"] == [
        "queued", "running", "succeeded"]
    backend_keys = [e.dedupe_key for e in events if (e.dedupe_key or "").startswith("backend:")]
    provider_events = [e for e in openai.world.events_of(external) if e["type"] != "metrics"]
    assert len(backend_keys) == len(set(backend_keys)) == len(provider_events)
    assert stack.provider_creates() == 1


def test_kill_mid_outbox_send_delivers_every_notification_once_in_order(stack: Stack) -> None:
    stack.start()
    openai, slack = stack.openai, stack.slack
    dataset_id = stack.upload(_dataset())
    post = slack.hold_next("chat.postMessage")  # Slack posts the card, serve never hears back
    job_id = stack.create_openai_job(dataset_id, channel="C1")
    post.wait_arrived()
    stack.restart_after_kill()
    post.open()
    external = wait_for(lambda: stack.job(job_id)["external_id"], what="provider id stored")
    # Kill again while Slack holds a threaded reply it already posted.
    reply = slack.hold_next("chat.postMessage")
    openai.advance(external, 3)
    reply.wait_arrived()
    stack.restart_after_kill()
    reply.open()
    openai.run_to_end(external)
    wait_for(lambda: stack.job(job_id)["status"] == "succeeded", what="job succeeded")
    rows = wait_for(lambda: (r := stack.store.outbox()) and all(x.state == "sent" for x in r)
                    and r, what="outbox drained")

    posted = [m["metadata"]["event_payload"]["dedupe_key"]
              for m in slack.world.channel("C1") if "metadata" in m]
    assert Counter(posted).most_common(1)[0][1] == 1, f"posted twice: {posted}"
    job_rows = [r.dedupe_key for r in rows  # progress rows edit the card, they post nothing
                if r.job_id == job_id and r.channel == "C1" and r.kind != "progress"]
    assert posted == job_rows, "not every notification arrived once, in order"
    statuses = [r.payload.get("data", {}).get("status") for r in rows if r.kind == "status"]
    assert statuses[-1] == "succeeded"
    assert stack.provider_creates() == 1
    time.sleep(0.5)  # nothing is re-sent once everything is marked sent
    assert len([m for m in slack.world.channel("C1") if "metadata" in m]) == len(posted)
