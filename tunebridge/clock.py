"""Time and ids are injected so tests can control them."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class IdFactory:
    """Ids like `job_0193f2c4a1b2_9f3e2a1c`: a millisecond timestamp then randomness, so they
    sort by creation time (cursor pagination) and are unique across processes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0

    def new(self, prefix: str) -> str:
        with self._lock:
            ms = max(int(time.time() * 1000), self._last_ms + 1)
            self._last_ms = ms
        return f"{prefix}_{ms:012x}{os.urandom(5).hex()}"


new_id = IdFactory().new
