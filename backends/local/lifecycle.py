"""Trainer-process lifecycle helpers that must work before torch is imported.

The heartbeat starts first thing, so that the (slow) imports and model loading already count as
"alive"; the stop flag is armed first thing, so a cancel during loading is honoured too.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType

from backends.local.runs import RunDir, write_json_atomic


class StopFlag:
    """Set by SIGTERM or by the gateway's stop file; checked once per optimizer step."""

    def __init__(self, run: RunDir) -> None:
        self._run = run
        self._event = threading.Event()
        self.source: str | None = None

    def install_sigterm(self) -> None:
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.set("SIGTERM")

    def set(self, source: str) -> None:
        if not self._event.is_set():
            self.source = source
            self._event.set()

    def is_set(self) -> bool:
        if not self._event.is_set() and self._run.stop_requested():
            self.set("stop request")
        return self._event.is_set()


class Heartbeat:
    """Rewrites heartbeat.json every few seconds from a daemon thread, so a gateway can tell a
    live trainer from a frozen or vanished one."""

    def __init__(self, run: RunDir, interval: float) -> None:
        self.run = run
        self.interval = interval
        self.step: int | None = None
        self.max_steps: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        write_json_atomic(
            self.run.heartbeat,
            {"at": time.time(), "step": self.step, "max_steps": self.max_steps},
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def close(self) -> None:
        self._stop.set()
