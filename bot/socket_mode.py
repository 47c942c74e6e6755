"""Socket Mode (the embedded default): a websocket to Slack instead of a public endpoint.

Connecting happens in a background thread that keeps retrying with backoff, so `serve` starts
and serves HTTP even when Slack is unreachable; once connected, slack_sdk's client reconnects
by itself. Notifications do not depend on this connection at all (they use the Web API).
"""

from __future__ import annotations

import logging
import threading

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler

log = logging.getLogger(__name__)


class SocketModeRunner:
    def __init__(self, app: App, app_token: str, *, first_backoff_s: float = 1.0,
                 max_backoff_s: float = 60.0) -> None:
        self._app = app
        self._app_token = app_token
        self._first_backoff_s = first_backoff_s
        self._max_backoff_s = max_backoff_s
        self._stopped = threading.Event()
        self._handler: SocketModeHandler | None = None
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="slack-socket-mode", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        backoff = self._first_backoff_s
        while not self._stopped.is_set():
            handler = SocketModeHandler(self._app, self._app_token)
            try:
                handler.connect()
            except Exception as exc:  # unreachable, bad token, ...: keep serving, try later
                handler.close()
                log.warning("slack socket mode: cannot connect (%s); retrying in %.0fs",
                            exc, backoff)
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
                continue
            if self._stopped.is_set():  # stop() came while connecting
                handler.close()
                return
            self._handler = handler
            self.connected.set()
            log.info("slack socket mode connected")
            return

    def stop(self) -> None:
        self._stopped.set()
        if self._handler is not None:
            self._handler.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
