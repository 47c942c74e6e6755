"""Where a job lives in a chat channel: the thread its status card started.

The source of truth is the outbox itself: every receipt of a notification delivered for a job
in a channel carries the thread's ts and the channel's id, so every channel (the job's own and
subscribers') works the same way, and a crash-recovered delivery (`find_delivered`) restores it
too. The job row keeps the ts of its own channel's thread for the API and the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Database
from storage.repositories.jobs import JobRepository
from storage.repositories.outbox import OutboxRepository
from storage.tables import Notification


@dataclass(frozen=True)
class Thread:
    channel_id: str  # what the chat service calls the channel (an id, even if we hold a name)
    ts: str


def thread_of(*, db: Database, job_id: str, channel: str) -> Thread | None:
    """Every receipt of a delivered row names its thread, so the latest one is enough."""
    with db.session() as session:
        row = OutboxRepository(session).last_sent(job_id, channel)
    receipt = (row.receipt if row is not None else None) or {}
    if not receipt.get("thread_ts"):
        return None  # nothing delivered here yet (or only before Slack was configured)
    return Thread(channel_id=str(receipt.get("channel") or channel),
                  ts=str(receipt["thread_ts"]))


def record_thread(*, db: Database, job_id: str, channel: str, thread_ts: str) -> bool:
    """Store the thread on the job when it is the job's own channel; never moves it later."""
    with db.session() as session:
        repo = JobRepository(session)
        job = repo.get(job_id)
        if job is None or job.slack_channel != channel:
            return False
        return repo.set_thread(job_id, thread_ts)


def queued_notification(*, db: Database, dedupe_key: str) -> Notification | None:
    with db.session() as session:
        return OutboxRepository(session).by_dedupe_key(dedupe_key)
