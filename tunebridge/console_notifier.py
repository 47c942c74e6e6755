"""Notifications on stdout when Slack is not configured, with a delivery journal.

Runaway warnings name the on-call group (as Slack mentions it); a completion summary writes
its loss chart to `chart_dir` and prints the file's path.

The journal (one JSON line per delivered dedupe key, fsynced) lets the outbox tell, after a
crash, whether a row in flight was already printed, so a restart never prints it twice.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import orjson

from tunebridge.outbox import OutgoingNotification


class ConsoleNotifier:
    def __init__(self, journal: Path, stream: TextIO | None = None, *,
                 chart: Callable[[str], bytes | None] | None = None,
                 chart_dir: Path | None = None, oncall_group: str | None = None) -> None:
        self.journal = journal
        self.stream = stream or sys.stdout
        self.chart = chart
        self.chart_dir = chart_dir or journal.parent / "charts"
        self.oncall_group = oncall_group
        journal.parent.mkdir(parents=True, exist_ok=True)

    async def send(self, notification: OutgoingNotification) -> dict[str, Any]:
        return await asyncio.to_thread(self._send, notification)

    def _send(self, notification: OutgoingNotification) -> dict[str, Any]:
        channel = (notification.channel or "").lstrip("#")
        where = f" #{channel}" if channel else ""
        text = notification.payload.get("text", "")
        data = notification.payload.get("data") or {}
        if data.get("mention_oncall"):
            text = f"@{self.oncall_group or 'on-call'} {text}"
        receipt: dict[str, Any] = {"console": True}
        chart = self._write_chart(notification)
        if chart is not None:
            text += f"\n  loss chart: {chart}"
            receipt["chart"] = str(chart)
        self.stream.write(f"[tunebridge{where}] {text}\n")
        self.stream.flush()
        with self.journal.open("ab") as out:
            out.write(orjson.dumps({"dedupe_key": notification.dedupe_key}) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        return receipt

    def _write_chart(self, notification: OutgoingNotification) -> Path | None:
        if notification.kind != "completion_summary" or not notification.job_id \
                or self.chart is None:
            return None
        png = self.chart(notification.job_id)
        if png is None:
            return None
        self.chart_dir.mkdir(parents=True, exist_ok=True)
        path = (self.chart_dir / f"{notification.job_id}-loss.png").resolve()
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(png)
        os.replace(tmp, path)
        return path

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
