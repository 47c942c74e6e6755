"""Runs `tunebridge serve` as a real subprocess, for crash and CLI tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


class ServeProcess:
    def __init__(self, data_dir: Path, database_url: str, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "TUNEBRIDGE_DATA_DIR": str(data_dir),
            "TUNEBRIDGE_DATABASE_URL": database_url,
            "TUNEBRIDGE_BACKEND_PLUGINS": '["tests.fakes.scripted_backend:build"]',
            "TUNEBRIDGE_DEFAULT_BACKEND": "scripted",
            "TUNEBRIDGE_POLL_INTERVAL_S": "0.2",
            "TUNEBRIDGE_OUTBOX_INTERVAL_S": "0.1",
            "TUNEBRIDGE_LOG_LEVEL": "warning",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.outputs: list[Path] = []

    def start(self, timeout: float = 30) -> None:
        out = self.data_dir.parent / f"serve-{len(self.outputs)}.out"
        self.outputs.append(out)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tunebridge.cli", "serve", "--port", str(self.port)],
            env=self.env, cwd=self.data_dir.parent, stdout=out.open("wb"),
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {out.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("serve did not become ready")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def admin_key(self) -> str:
        return (self.data_dir / "admin.key").read_text().strip()

    def output(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.outputs)
