"""Notifications on stdout when Slack is not configured, with a delivery journal.

The journal (one JSON line per delivered dedupe key, fsynced) lets the outbox tell, after a
crash, whether a row in flight was already printed, so a restart never prints it twice.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import orjson

from tunebridge.outbox import OutgoingNotification


class ConsoleNotifier:
    def __init__(self, journal: Path, stream: TextIO | None = None) -> None:
        self.journal = journal
        self.stream = stream or sys.stdout
        journal.parent.mkdir(parents=True, exist_ok=True)

    async def send(self, notification: OutgoingNotification) -> dict[str, Any]:
        return await asyncio.to_thread(self._send, notification)

    def _send(self, notification: OutgoingNotification) -> dict[str, Any]:
        channel = (notification.channel or "").lstrip("#")
        where = f" #{channel}" if channel else ""
        text = notification.payload.get("text", "")
        self.stream.write(f"[tunebridge{where}] {text}\n")
        self.stream.flush()
        with self.journal.open("ab") as out:
            out.write(orjson.dumps({"dedupe_key": notification.dedupe_key}) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        return {"console": True}

    async def find_delivered(self, dedupe_key: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._find, dedupe_key)

    def _find(self, dedupe_key: str) -> dict[str, Any] | None:
        if not self.journal.exists():
            return None
        with self.journal.open("rb") as lines:
            for line in lines:
                try:
                    if orjson.loads(line).get("dedupe_key") == dedupe_key:
                        return {"console": True, "recovered": True}
                except orjson.JSONDecodeError:
                    continue  # a torn last line from a crash mid-write
        return None
