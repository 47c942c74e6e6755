"""Channels that follow jobs beyond each job's own channel: all jobs, or one backend's.

`fan_out` is what the lifecycle calls after queuing a notification, in the same transaction, so
a subscribed channel gets its own copy of every notification (its own card and thread) exactly
once and in order, like the job's own channel.
"""

from __future__ import annotations

import hashlib

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from backends.registry import BackendRegistry
from storage.database import Database
from storage.repositories.outbox import OutboxRepository
from storage.repositories.subscriptions import SubscriptionRepository
from storage.tables import Job, Notification, Subscription
from tunebridge.clock import Clock
from tunebridge.errors import InvalidInput, Problem

ALL_BACKENDS = "*"
_MAX_KEY = 200  # Notification.dedupe_key


def subscribe(*, db: Database, registry: BackendRegistry, clock: Clock, channel: str,
              backend: str | None, actor: str) -> Subscription:
    """Idempotent: subscribing twice keeps the first subscription."""
    wanted = backend or ALL_BACKENDS
    if wanted != ALL_BACKENDS and wanted not in registry:
        raise InvalidInput(
            "unknown_backend",
            f"Backend {wanted!r} is not configured; available: {registry.names()}.",
            [Problem("unknown_backend", "Unknown backend.", field="backend")])
    try:
        with db.session() as session:
            repo = SubscriptionRepository(session)
            existing = repo.find(channel, wanted)
            if existing is not None:
                return existing
            return repo.add(Subscription(channel=channel, backend=wanted, created_by=actor,
                                         created_at=clock.now()))
    except IntegrityError:  # a concurrent subscribe of the same pair won
        with db.session() as session:
            winner = SubscriptionRepository(session).find(channel, wanted)
        if winner is None:
            raise
        return winner


def unsubscribe(*, db: Database, channel: str, backend: str | None) -> int:
    """Remove one backend's subscription, or every subscription of the channel; the count."""
    with db.session() as session:
        return SubscriptionRepository(session).remove(channel, backend)


def subscriptions_of(*, db: Database, channel: str) -> list[Subscription]:
    with db.session() as session:
        return SubscriptionRepository(session).for_channel(channel)


def fan_out(session: Session, job: Job, notification: Notification) -> list[Notification]:
    """Queue a copy of `notification` for every channel following `job.backend`.

    The job's own channel is skipped (it has the original). Copies keep the kind and payload;
    their dedupe keys derive from the original's, so a replayed notify adds nothing.
    """
    outbox = OutboxRepository(session)
    copies: list[Notification] = []
    for channel in SubscriptionRepository(session).channels_following(job.backend):
        if channel == notification.channel:
            continue
        copy = outbox.add_once(Notification(
            dedupe_key=copy_key(notification.dedupe_key, channel), job_id=notification.job_id,
            channel=channel, kind=notification.kind, payload=dict(notification.payload),
            created_at=notification.created_at))
        if copy is not None:
            copies.append(copy)
    return copies


def copy_key(dedupe_key: str, channel: str) -> str:
    key = f"{dedupe_key}@{channel}"
    if len(key) <= _MAX_KEY:
        return key
    return f"{hashlib.sha256(dedupe_key.encode()).hexdigest()[:48]}@{channel}"[:_MAX_KEY]
