"""API keys: shown once, stored as sha256, scoped."""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from storage.database import Database
from storage.repositories.api_keys import ApiKeyRepository
from storage.tables import ApiKey
from tunebridge.clock import Clock, new_id
from tunebridge.errors import Forbidden, InvalidInput, NotFound, Unauthorized

KEY_PREFIX = "tb_"


class Scope(StrEnum):
    READ = "read"
    DATASETS_WRITE = "datasets:write"
    JOBS_WRITE = "jobs:write"
    JOBS_CANCEL = "jobs:cancel"
    ADMIN = "admin"


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    plaintext: str  # never stored, never logged


def hash_key(plaintext: str) -> str:
    # Keys carry 256 bits of randomness, so a fast hash is enough and lookups stay O(1).
    return hashlib.sha256(plaintext.encode()).hexdigest()


def parse_scopes(raw: list[str]) -> list[Scope]:
    try:
        return sorted({Scope(s) for s in raw})
    except ValueError:
        raise InvalidInput(
            "invalid_scope", f"Scopes must be among {[s.value for s in Scope]}; got {raw}."
        ) from None


def create_key(*, db: Database, clock: Clock, name: str, scopes: list[str]) -> IssuedKey:
    issued = _mint(clock=clock, name=name, scopes=scopes)
    with db.session() as session:
        ApiKeyRepository(session).add(issued.key)
    return issued


def _mint(*, clock: Clock, name: str, scopes: list[str]) -> IssuedKey:
    parsed = parse_scopes(scopes)
    if not parsed:
        raise InvalidInput("invalid_scope", "A key needs at least one scope.")
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(id=new_id("key"), name=name, prefix=plaintext[:10], key_hash=hash_key(plaintext),
                 scopes=[s.value for s in parsed], created_at=clock.now())
    return IssuedKey(key=key, plaintext=plaintext)


def authenticate(*, db: Database, clock: Clock, token: str | None) -> ApiKey:
    if not token:
        raise Unauthorized()
    with db.session() as session:
        key = ApiKeyRepository(session).by_hash(hash_key(token))
        if key is None:
            raise Unauthorized("The API key is not valid.")
        if key.revoked_at is not None:
            raise Unauthorized("The API key has been revoked.")
        now = clock.now()
        if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
            key.last_used_at = now  # coarse, so reads don't all become writes
            ApiKeyRepository(session).save(key)
        return key


def require_scope(key: ApiKey, scope: Scope) -> None:
    if Scope.ADMIN.value not in key.scopes and scope.value not in key.scopes:
        raise Forbidden(scope.value)


def list_keys(*, db: Database) -> list[ApiKey]:
    with db.session() as session:
        return ApiKeyRepository(session).all()


def revoke_key(*, db: Database, clock: Clock, key_id: str) -> ApiKey:
    with db.session() as session:
        repo = ApiKeyRepository(session)
        key = repo.get(key_id)
        if key is None:
            raise NotFound("api_key", key_id)
        if key.revoked_at is None:
            key.revoked_at = clock.now()
            repo.save(key)
        return key


def ensure_admin_key(*, db: Database, clock: Clock, path: Path) -> Path | None:
    """On an empty database, mint an admin key into a 0600 file and return its path.

    Exactly one key even when replicas start together (a lock held until commit). The file is
    written before the commit: a crash in between leaves no key in the database, so the next
    start mints a fresh one, rather than a stored key that nobody holds."""
    with db.session() as session:
        repo = ApiKeyRepository(session)
        repo.hold_bootstrap_lock()
        if repo.count() > 0:
            return None
        issued = _mint(clock=clock, name="bootstrap-admin", scopes=[Scope.ADMIN.value])
        repo.add(issued.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(issued.plaintext + "\n")
        os.chmod(path, 0o600)
    return path
