"""SIGKILL `tunebridge serve` at the four dangerous moments and restart it, on SQLite and
PostgreSQL, against the fake OpenAI and fake Slack servers: mid-upload, between the provider's
job create and our commit, mid-poll, and mid Slack post. One server lifetime per database takes
all four kills in turn (five starts instead of eight: CI time).

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


def _kill_mid_upload(stack: Stack) -> None:
    thread, release = _half_upload(stack, 40 << 20)
    wait_for(lambda: _staged_bytes(stack) > 8 << 20, what="half the upload staged")
    stack.restart_after_kill()
    release.set()
    thread.join(10)
    assert stack.store.datasets() == []
    blobs = stack.serve.data_dir / "blobs"
    assert list(blobs.rglob("*.jsonl")) == [], "a half-written blob became visible"


def _kill_between_create_and_commit(stack: Stack, dataset_id: str) -> tuple[str, str]:
    """The provider created the job; serve dies before it stores the provider's id."""
    create = stack.openai.hold_next("POST", "/v1/fine_tuning/jobs")
    job_id = stack.create_openai_job(dataset_id, channel="C1")
    create.wait_arrived()
    stack.restart_after_kill()
    create.open()
    assert len(stack.openai.world.jobs) == 1
    external = wait_for(lambda: stack.job(job_id)["external_id"], what="provider id stored")
    assert external == next(iter(stack.openai.world.jobs))
    assert stack.provider_creates() == 1, "a second provider job was created"
    return job_id, external


def _kill_mid_poll(stack: Stack, external: str) -> None:
    """The provider has new events; serve dies while their page is in flight."""
    stack.openai.advance(external, 4)
    poll = stack.openai.hold_next("GET", EVENTS)
    poll.wait_arrived()
    stack.restart_after_kill()
    poll.open()


def _kill_mid_slack_post(stack: Stack, job_id: str, external: str) -> None:
    """Slack posted a threaded reply (job succeeded); serve dies before it hears so.

    Everything owed so far must be sent first: the restart after the mid-poll kill may post
    "training started" at any moment, and the hold must catch a post that is certainly new."""
    wait_for(lambda: stack.job(job_id)["status"] == "running"
             and all(r.state == "sent" for r in stack.store.outbox()),
             what="training-started reply sent")
    reply = stack.slack.hold_next("chat.postMessage")
    stack.openai.run_to_end(external)
    reply.wait_arrived()
    stack.restart_after_kill()
    reply.open()


def test_sigkill_at_each_dangerous_moment_loses_and_repeats_nothing(stack: Stack) -> None:
    stack.start()
    _kill_mid_upload(stack)
    dataset_id = stack.upload(_dataset())
    assert stack.upload(_dataset()) == dataset_id  # stored once
    assert len(list((stack.serve.data_dir / "blobs").rglob("*.jsonl"))) == 1
    job_id, external = _kill_between_create_and_commit(stack, dataset_id)
    _kill_mid_poll(stack, external)
    _kill_mid_slack_post(stack, job_id, external)
    wait_for(lambda: stack.job(job_id)["status"] == "succeeded", what="job succeeded")

    # No lost or repeated metric point, provider event or status change.
    total = stack.openai.world.jobs[external].total_steps
    metrics = stack.http.get(f"/api/jobs/{job_id}/metrics", params={"limit": 200}).json()["data"]
    assert [m["step"] for m in metrics] == list(range(1, total + 1))
    events = stack.store.events(job_id)
    assert [e.to_status for e in events if e.kind == "status"] == [
        "queued", "running", "succeeded"]
    backend_keys = [e.dedupe_key for e in events if (e.dedupe_key or "").startswith("backend:")]
    provider_events = [e for e in stack.openai.world.events_of(external)
                       if e["type"] != "metrics"]
    assert len(backend_keys) == len(set(backend_keys)) == len(provider_events)
    assert stack.provider_creates() == 1

    # Every notification reached Slack once, in order.
    rows = wait_for(lambda: (r := stack.store.outbox()) and all(x.state == "sent" for x in r)
                    and r, what="outbox drained")
    posted = [m["metadata"]["event_payload"]["dedupe_key"]
              for m in stack.slack.world.channel("C1") if "metadata" in m]
    assert Counter(posted).most_common(1)[0][1] == 1, f"posted twice: {posted}"
    job_rows = [r.dedupe_key for r in rows  # progress rows edit the card, they post nothing
                if r.job_id == job_id and r.channel == "C1" and r.kind != "progress"]
    assert posted == job_rows, "not every notification arrived once, in order"
    time.sleep(0.5)  # nothing is re-sent once everything is marked sent
    assert len([m for m in stack.slack.world.channel("C1") if "metadata" in m]) == len(posted)
