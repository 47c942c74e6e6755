"""A backend plugin for replica tests: the scripted provider, with polls that take time and
leave a trace.

Every poll appends `pid start|end external_id wall_time` to one file shared by all replicas
(one short `O_APPEND` write per line, so lines from two processes never interleave). The test
reads it back to see who polled when: overlapping polls from two pids mean two ticks ran at
once. The provider's state lives in a directory shared by the replicas, as a remote service's
would.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from backends.base import Handle, Update
from tests.fakes.scripted_backend import ScriptedBackend

TRACE = "SCALEOUT_TRACE"
PROVIDER_DIR = "SCALEOUT_PROVIDER_DIR"
POLL_SECONDS = "SCALEOUT_POLL_SECONDS"


class RecordingBackend(ScriptedBackend):
    def __init__(self, state_dir: Path, *, trace: Path, poll_seconds: float,
                 step_seconds: float) -> None:
        super().__init__(state_dir, step_seconds=step_seconds)
        self.trace = trace
        self.poll_seconds = poll_seconds

    def _note(self, event: str, external_id: str) -> None:
        line = f"{os.getpid()} {event} {external_id} {time.time():.6f}\n".encode()
        fd = os.open(self.trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    async def poll(self, handle: Handle, cursor: str | None) -> Update:
        self._note("start", handle.external_id)
        try:
            await asyncio.sleep(self.poll_seconds)  # a slow provider: ticks last a while
            return await super().poll(handle, cursor)
        finally:
            self._note("end", handle.external_id)


def build(settings: Any) -> RecordingBackend:
    """Plugin factory (`TUNEBRIDGE_BACKEND_PLUGINS`); configured by environment variables."""
    del settings
    return RecordingBackend(Path(os.environ[PROVIDER_DIR]), trace=Path(os.environ[TRACE]),
                            poll_seconds=float(os.environ.get(POLL_SECONDS, "0.3")),
                            step_seconds=float(os.environ.get("SCRIPTED_STEP_SECONDS", "0.1")))
