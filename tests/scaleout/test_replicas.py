"""Two real `tunebridge serve` replicas on one PostgreSQL schema.

Both run the scheduler. Polls are slow (the recording backend sleeps in each) so that two ticks
running at once would show as overlapping polls from two pids. Each replica talks to its own
front door of one fake Slack workspace, so the test sees who posted what. Half-way, the replica
that is mid-poll (the tick's leader, holding the advisory lock) is SIGKILLed.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from storage.database import Database
from storage.tables import Notification
from tests.conftest import chat_line, jsonl
from tests.e2e.serve_process import ServeProcess
from tests.fakes.slack_server import BOT_TOKEN, FakeSlack
from tests.scaleout import recording_backend

START_S = 120  # imports alone take seconds on a busy 2-core runner

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

INTERVAL_S = 0.5  # poll interval of both replicas
POLL_S = 0.3  # each provider poll takes this long
SLACK_S = 1.0  # scheduling slack on a loaded CI machine
STEPS = 50  # at 0.1 s a step: the jobs outlive the kill by a few seconds


@dataclass
class Poll:
    pid: int
    job: str
    start: float
    end: float | None


def read_polls(trace: Path) -> list[Poll]:
    polls: list[Poll] = []
    open_polls: dict[tuple[int, str], Poll] = {}
    if not trace.exists():
        return polls
    for line in trace.read_text().splitlines():
        pid, event, job, at = line.split()
        key = (int(pid), job)
        if event == "start":
            open_polls[key] = Poll(int(pid), job, float(at), None)
            polls.append(open_polls[key])
        else:
            open_polls.pop(key).end = float(at)
    return polls


def overlapping(polls: list[Poll], killed_at: float) -> list[tuple[Poll, Poll]]:
    """Pairs of polls by two different processes that ran at the same time."""
    def end(poll: Poll) -> float:
        return poll.end if poll.end is not None else killed_at
    return [(a, b) for i, a in enumerate(polls) for b in polls[i + 1:]
            if a.pid != b.pid and a.start < end(b) and b.start < end(a)]


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return found


@pytest.fixture
def slack_doors() -> Iterator[tuple[FakeSlack, FakeSlack]]:
    """Two fake Slack servers sharing one workspace: one per replica, same channels."""
    with FakeSlack() as door_a, FakeSlack() as door_b:
        door_b.world = door_a.world
        door_a.latency_s = door_b.latency_s = 0.02
        yield door_a, door_b


def _replica(tmp_path: Path, name: str, database_url: str, slack: FakeSlack) -> ServeProcess:
    (tmp_path / name).mkdir()
    return ServeProcess(
        tmp_path / name / "var", database_url,
        TUNEBRIDGE_BACKEND_PLUGINS='["tests.scaleout.recording_backend:build"]',
        TUNEBRIDGE_POLL_INTERVAL_S=str(INTERVAL_S), TUNEBRIDGE_OUTBOX_INTERVAL_S="0.1",
        TUNEBRIDGE_SLACK_BOT_TOKEN=BOT_TOKEN, TUNEBRIDGE_SLACK_API_URL=slack.api_url,
        TUNEBRIDGE_SLACK_POST_INTERVAL_S="0", SCRIPTED_STEP_SECONDS="0.1",
        **{recording_backend.TRACE: str(tmp_path / "polls.trace"),
           recording_backend.PROVIDER_DIR: str(tmp_path / "provider"),
           recording_backend.POLL_SECONDS: str(POLL_S)})


def _admin_key(replicas: list[ServeProcess]) -> str:
    """Whichever replica found the database empty minted the bootstrap key (maybe both)."""
    return next(r.admin_key() for r in replicas if (r.data_dir / "admin.key").exists())


def _posted_keys(door: FakeSlack) -> list[str]:
    keys = []
    for call in door.calls_to("chat.postMessage"):
        metadata = call.args.get("metadata")
        metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
        assert isinstance(metadata, dict), call.args
        keys.append(metadata["event_payload"]["dedupe_key"])
    return keys


def _kill_mid_poll(replicas: list[ServeProcess], trace: Path) -> tuple[ServeProcess, float]:
    """SIGKILL the replica whose poll started a moment ago: it holds the tick's lock."""
    by_pid = {replica.proc.pid: replica for replica in replicas if replica.proc}

    def fresh_open_poll() -> Poll | None:
        now = time.time()
        return next((p for p in read_polls(trace) if p.end is None and p.pid in by_pid
                     and now - p.start < POLL_S / 3), None)

    poll = wait_for(fresh_open_poll, "a poll in progress")
    killed_at = time.time()
    victim = by_pid[poll.pid]
    assert victim.proc is not None
    os.kill(poll.pid, signal.SIGKILL)
    victim.proc.wait(timeout=10)
    return victim, killed_at


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_two_replicas_one_tick_at_a_time_takeover_on_sigkill_and_each_post_once(
        tmp_path: Path, database_url: str, slack_doors: tuple[FakeSlack, FakeSlack]) -> None:
    trace = tmp_path / "polls.trace"
    (tmp_path / "provider").mkdir()
    replicas = [_replica(tmp_path, name, database_url, door)
                for name, door in zip(("a", "b"), slack_doors, strict=True)]
    db = Database(database_url)
    try:
        with ThreadPoolExecutor(len(replicas)) as pool:  # started together, as in a rollout
            list(pool.map(lambda replica: replica.start(timeout=START_S), replicas))
        http = httpx.Client(base_url=replicas[1].url, timeout=30,
                            headers={"Authorization": f"Bearer {_admin_key(replicas)}"})
        dataset = http.post("/api/datasets", content=jsonl(
            [chat_line(f"q{i}", f"a{i}") for i in range(12)])).json()["id"]
        job_ids = [http.post("/api/jobs", json={
            "training_dataset_id": dataset, "base_model": "m",
            "options": {"scripted_steps": STEPS}, "notify": {"slack_channel": channel}},
        ).json()["id"] for channel in ("C1", "C1", "C2")]

        wait_for(lambda: len(read_polls(trace)) >= 6, "polls of the running jobs")
        victim, killed_at = _kill_mid_poll(replicas, trace)
        survivor = next(r for r in replicas if r is not victim)
        assert survivor.proc is not None
        survivor_pid = survivor.proc.pid
        killed_pid = victim.proc.pid if victim.proc else -1
        assert [p for p in read_polls(trace) if p.pid == killed_pid][-1].end is None, \
            "the victim was not mid-poll when killed"

        # Takeover: the survivor polls within one interval of the leader's death.
        taken = wait_for(lambda: next((p for p in read_polls(trace)
                                       if p.pid == survivor_pid and p.start > killed_at),
                                      None), "the survivor's first poll", timeout=10)
        assert taken.start - killed_at <= INTERVAL_S + SLACK_S, \
            f"takeover took {taken.start - killed_at:.2f}s"

        survivor_http = httpx.Client(base_url=survivor.url, headers=http.headers, timeout=30)
        wait_for(lambda: all(survivor_http.get(f"/api/jobs/{j}").json()["status"] == "succeeded"
                             for j in job_ids), "all jobs to succeed")

        def outbox_settled() -> list[Notification] | None:
            with db.session() as session:
                rows = list(session.exec(select(Notification)))
            return rows if rows and all(r.state == "sent" for r in rows) else None

        rows = wait_for(outbox_settled, "the outbox to drain", timeout=60)
        polls = read_polls(trace)
    finally:
        for replica in replicas:
            replica.stop()
        db.dispose()

    # No two ticks at once, across the whole run and the kill.
    assert overlapping(polls, killed_at) == []
    assert survivor_pid in {p.pid for p in polls}

    # Every notification reached Slack exactly once, from one replica or the other.
    posted = _posted_keys(slack_doors[0]) + _posted_keys(slack_doors[1])
    assert [key for key, n in Counter(posted).items() if n > 1] == []
    assert set(posted) == {row.dedupe_key for row in rows if row.channel}
    assert len(posted) >= 3 * len(job_ids)  # created, running, succeeded per job
    # In order per channel: one card per job, every reply in that card's thread.
    world = slack_doors[0].world
    for channel in ("C1", "C2"):
        messages = world.channel(channel)
        cards = [m for m in messages if m.get("metadata", {}).get("event_payload", {})
                 .get("card")]
        assert len(cards) == len({m["metadata"]["event_payload"]["job_id"] for m in cards})
        card_ts = {m["ts"] for m in cards}
        assert all(m.get("thread_ts") in card_ts for m in messages if m not in cards)
