"""A test-controlled gate: a fake server holds one response until the test opens it.

The fake does the work first (records the request, creates the job, posts the message) and
then blocks in `block()`; the test sees `arrived`, kills `tunebridge serve` while the answer is
still held, and opens the gate afterwards so the server thread can finish (into a dead socket).
This is test infrastructure only: nothing in the product knows about it.
"""

from __future__ import annotations

import threading


class Gate:
    def __init__(self, max_hold_s: float = 120.0) -> None:
        self.arrived = threading.Event()
        self._opened = threading.Event()
        self.max_hold_s = max_hold_s

    def block(self) -> None:
        """Called by the fake's handler thread, after the work and before the answer."""
        self.arrived.set()
        self._opened.wait(self.max_hold_s)

    def wait_arrived(self, timeout: float = 30.0) -> None:
        if not self.arrived.wait(timeout):
            raise AssertionError("the held request never arrived at the fake")

    def open(self) -> None:
        self._opened.set()
