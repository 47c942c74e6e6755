"""Idempotency-Key semantics for POSTs: a retry gets the first answer; a reused key with a
different body is refused; two requests racing on one key cannot both run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from storage.database import Database
from storage.repositories.idempotency import IdempotencyRepository
from storage.tables import IdempotencyRecord
from tunebridge.clock import Clock
from tunebridge.errors import Conflict, InvalidInput


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: str
    headers: dict[str, Any]


@dataclass(frozen=True)
class Reservation:
    record_id: int


def reserve(*, db: Database, clock: Clock, scope: str, key: str, request_hash: str,
            ttl_s: int, lease_s: int) -> Reservation | StoredResponse:
    """Claim the key, or return the stored response of the request that claimed it first.

    A claim that never completed and is older than `lease_s` was left by a request that died
    with its process; the retry takes it over rather than waiting out the TTL.
    """
    if not key or len(key) > 255:
        raise InvalidInput("invalid_idempotency_key", "Idempotency-Key must be 1-255 characters.")
    now = clock.now()
    with db.session() as session:
        repo = IdempotencyRepository(session)
        existing = repo.get(scope, key)
        if existing is not None and _expired(existing, now, ttl_s, lease_s):
            repo.remove(existing.id or 0)
            existing = None
        if existing is not None:
            return _replay(existing, request_hash)
    try:
        with db.session() as session:
            record = IdempotencyRepository(session).add(IdempotencyRecord(
                scope=scope, key=key, request_hash=request_hash, created_at=now))
            return Reservation(record_id=record.id or 0)
    except IntegrityError:
        with db.session() as session:
            raced = IdempotencyRepository(session).get(scope, key)
        if raced is None:
            raise
        return _replay(raced, request_hash)


def _expired(record: IdempotencyRecord, now: datetime, ttl_s: int, lease_s: int) -> bool:
    age = now - record.created_at
    return age > timedelta(seconds=ttl_s) or (
        record.state != "done" and age > timedelta(seconds=lease_s))


def _replay(record: IdempotencyRecord, request_hash: str) -> StoredResponse:
    if record.request_hash != request_hash:
        raise Conflict("idempotency_key_reused",
                       "This Idempotency-Key was used with a different request.")
    if record.state != "done":
        raise Conflict("idempotency_key_in_use",
                       "A request with this Idempotency-Key is still in progress; retry later.")
    return StoredResponse(status_code=record.status_code or 200, body=record.response_body or "",
                          headers=record.response_headers or {})


def complete(*, db: Database, reservation: Reservation, response: StoredResponse) -> None:
    with db.session() as session:
        repo = IdempotencyRepository(session)
        record = session.get(IdempotencyRecord, reservation.record_id)
        if record is None:
            return
        record.state = "done"
        record.status_code = response.status_code
        record.response_body = response.body
        record.response_headers = response.headers
        repo.save(record)


def release(*, db: Database, reservation: Reservation) -> None:
    """Forget a claim whose request failed in a way a retry may fix (5xx, auth)."""
    with db.session() as session:
        IdempotencyRepository(session).remove(reservation.record_id)
