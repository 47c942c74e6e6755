"""A real Ray head for tests, in a private network namespace, reachable only through a relay.

`ray start` opens ports on every interface, so the head runs under `unshare -rn` (a user and a
network namespace, no privileges needed) with only its own loopback up. Its job server is
relayed to 127.0.0.1:<port> on the host through a Unix socket (see relay.py); the trainers Ray
starts run inside the namespace too and write into run directories on the shared filesystem.
Stopping kills exactly the processes in that namespace, found by their namespace id.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.ray.relay import Relay

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def unshare_works() -> str | None:
    """None when an unprivileged user+network namespace with a loopback can be made here."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip (iproute2) is not installed"
    probe = subprocess.run(["unshare", "-rn", "sh", "-c", "ip link set lo up"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"unshare -rn failed: {probe.stderr.strip()}"
    return None


class RayHead:
    def __init__(self, root: Path, token: str, num_cpus: int = 4) -> None:
        self.root = root  # short: Ray's socket paths live under it
        self.token = token
        self.num_cpus = num_cpus
        self.socket = root / "dashboard.sock"
        self.relay = Relay(f"unix:{self.socket}").start()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.start_seconds: list[float] = []
        self._starting: float | None = None  # the start's deadline while not yet ready
        self._began = 0.0
        self._ns: str | None = None  # "net:[inode]" of the head's namespace
        self.nodes: list[subprocess.Popen[bytes]] = []  # nodes joined by add_node

    @property
    def address(self) -> str:
        """The job server's URL on the host; waits for a head that is still starting, so that
        other fixtures (the tiny model) are built while Ray boots."""
        if self._starting is not None:
            self._wait_ready(self._starting)
            self._starting = None
        return self.relay.url

    @property
    def log(self) -> Path:
        return self.root / f"head-{self.starts}.log"

    def start(self, timeout: float = 240, wait: bool = True) -> None:
        self.starts += 1
        temp = self.root / f"t{self.starts}"
        temp.mkdir()
        (self.root / "home").mkdir(exist_ok=True)
        ray = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
               "--port=6379", "--dashboard-host=127.0.0.1", "--dashboard-port=8265",
               f"--num-cpus={self.num_cpus}", "--num-gpus=0", f"--temp-dir={temp}",
               "--include-dashboard=true", "--disable-usage-stats"]
        relay = [sys.executable, "-m", "tests.ray.relay", f"unix:{self.socket}",
                 "tcp:127.0.0.1:8265"]
        script = f"ip link set lo up && {shlex.join(relay)} & exec {shlex.join(ray)}"
        self._began = time.monotonic()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(["unshare", "-rn", "sh", "-c", script], cwd=REPO,
                                         env=self._env(), stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self._starting = time.monotonic() + timeout
        if wait:
            assert self.address

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                "PYTHONPATH": str(REPO), "HOME": str(self.root / "home"),
                "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token,
                "RAY_USAGE_STATS_ENABLED": "0"}

    def add_node(self, num_cpus: int = 2, timeout: float = 120) -> None:
        """Join one more Ray node (its own raylet, object store and agents) to the head, in the
        head's network namespace (entered with nsenter): two Ray nodes on one host, as Ray's
        own multi-node tests run them. Ray schedules onto it as onto another machine; the
        network between the nodes is this namespace's loopback."""
        assert self.address and self.proc is not None  # the head is up
        index = len(self.nodes) + 1
        temp = self.root / f"t{self.starts}-n{index}"
        temp.mkdir()
        ray = [str(BIN / "ray"), "start", "--address=127.0.0.1:6379", "--block",
               "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}", "--num-gpus=0",
               f"--temp-dir={temp}", f"--dashboard-agent-listen-port={52365 + index}",
               "--disable-usage-stats"]
        enter = ["nsenter", "-U", "-n", "--preserve-credentials", "-t", str(self.proc.pid)]
        log_path = self.root / f"node-{self.starts}-{index}.log"
        with log_path.open("ab") as log:
            self.nodes.append(subprocess.Popen(enter + ray, cwd=REPO, env=self._env(),
                                               stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True))
        deadline = time.monotonic() + timeout
        while self.alive_nodes() < index + 1:
            if self.nodes[-1].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Ray node {index} did not join: "
                                   f"{log_path.read_text()[-3000:]}")
            time.sleep(0.5)

    def alive_nodes(self) -> int:
        headers = {"Authorization": f"Bearer {self.token}"}
        data = httpx.get(f"{self.address}/nodes?view=summary", headers=headers,
                         timeout=10).json().get("data") or {}
        return sum(1 for node in data.get("summary", []) if node["raylet"]["state"] == "ALIVE")

    def _wait_ready(self, deadline: float) -> None:
        timeout = deadline - self._began
        headers = {"Authorization": f"Bearer {self.token}"}
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.relay.url}/api/jobs/", headers=headers,
                             timeout=5).status_code == 200:
                    self.start_seconds.append(time.monotonic() - self._began)
                    self._ns = os.readlink(f"/proc/{self.proc.pid}/ns/net")  # type: ignore[union-attr]
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"Ray head not ready in {timeout:.0f}s: {self.log.read_text()[-3000:]}")

    def namespace_pids(self) -> list[int]:
        """Every process in the head's network namespace (the head, raylet, workers,
        trainers, the inner relay)."""
        ns = self._ns
        if ns is None and self.proc is not None:
            try:
                ns = os.readlink(f"/proc/{self.proc.pid}/ns/net")
            except OSError:
                return []
        if ns is None or ns == os.readlink("/proc/self/ns/net"):
            return []  # never the host's own namespace
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.readlink(entry / "ns" / "net") == ns:
                        pids.append(int(entry.name))
                except OSError:
                    continue
        return pids

    def stop(self) -> None:
        """Everything in the namespace dies, as when a head machine goes down."""
        pids = self.namespace_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in [self.proc, *self.nodes]:
            if proc is not None:
                proc.wait(timeout=30)
        self.nodes = []
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() and _state(pid) not in ("Z", "X", None)
                  for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.proc = None
        self._starting = None
        self._ns = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self.relay.stop()


def _state(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()[0]
