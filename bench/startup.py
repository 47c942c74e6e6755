"""Start-up time of `tunebridge serve` (to /healthz 200) against a bare uvicorn app started
the same way in the same run, and proof that the gateway never imports the training stack.

Target: serve ready in <= 3 s; torch/transformers/peft/trl absent from the gateway process
even after it has accepted an upload and a job for the local backend.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "accelerate")
BASELINE_APP = (
    "import uvicorn\n"
    "async def app(scope, receive, send):\n"
    "    if scope['type'] != 'http':\n"
    "        return\n"
    "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
    "    await send({'type': 'http.response.body', 'body': b'ok'})\n"
    "uvicorn.run(app, host='127.0.0.1', port=int(__import__('sys').argv[1]), log_level='error')\n"
)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def time_until_ready(cmd: list[str], port: int, env: dict[str, str], cwd: Path,
                     stderr_path: Path) -> tuple[float, subprocess.Popen[bytes]]:
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=stderr_path.open("wb"))
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{cmd} exited: {stderr_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return time.perf_counter() - started, proc
        except httpx.TransportError:
            time.sleep(0.02)


def serve_once(workdir: Path, importtime: bool) -> tuple[float, str]:
    port = free_port()
    env = {**os.environ, "TUNEBRIDGE_DATA_DIR": str(workdir / "var"),
           "TUNEBRIDGE_LOG_LEVEL": "warning", "PYTHONPATH": str(REPO)}
    env.pop("TUNEBRIDGE_DATABASE_URL", None)
    flags = ["-X", "importtime"] if importtime else []
    stderr_path = workdir / f"serve-{port}.err"
    cmd = [sys.executable, *flags, "-m", "tunebridge.cli", "serve", "--port", str(port)]
    seconds, proc = time_until_ready(cmd, port, env, workdir, stderr_path)
    if importtime:
        exercise_local_path(port, workdir)
    proc.terminate()
    proc.wait(timeout=20)
    return seconds, stderr_path.read_text(errors="replace")


def exercise_local_path(port: int, workdir: Path) -> None:
    """Upload and start a local job so lazy imports on the request path would show up."""
    key = (workdir / "var" / "admin.key").read_text().strip()
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}",
                        headers={"Authorization": f"Bearer {key}"}, timeout=30)
    line = b'{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}\n'
    dataset = http.post("/api/datasets", content=line * 12).json()
    job = http.post("/api/jobs", json={"training_dataset_id": dataset["id"], "base_model": "x",
                                       "backend": "local", "options": {}})
    assert job.status_code == 201, job.text
    time.sleep(1.5)  # one poll tick submits it


def baseline_once(workdir: Path) -> float:
    port = free_port()
    script = workdir / "baseline_app.py"
    script.write_text(BASELINE_APP)
    seconds, proc = time_until_ready([sys.executable, str(script), str(port)], port,
                                     dict(os.environ), workdir, workdir / "baseline.err")
    proc.terminate()
    proc.wait(timeout=20)
    return seconds


def imported_heavy(importtime_log: str) -> list[str]:
    names = re.findall(r"import time:\s+\d+ \|\s+\d+ \|\s+(\S+)", importtime_log)
    return sorted({n for n in names if n.split(".")[0] in HEAVY})


def main(rounds: int = 5) -> None:
    serve_times, base_times = [], []
    for i in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            base_times.append(baseline_once(Path(tmp)))
        with tempfile.TemporaryDirectory() as tmp:
            serve_times.append(serve_once(Path(tmp), importtime=False)[0])
        print(f"round {i + 1}: serve {serve_times[-1]:.2f}s  bare uvicorn {base_times[-1]:.2f}s")
    with tempfile.TemporaryDirectory() as tmp:
        _, log = serve_once(Path(tmp), importtime=True)
    heavy = imported_heavy(log)
    serve_s, base_s = statistics.median(serve_times), statistics.median(base_times)
    print(f"serve ready (median of {rounds}): {serve_s:.2f} s")
    print(f"bare uvicorn ready (median of {rounds}): {base_s:.2f} s")
    print(f"ratio serve / bare uvicorn: {serve_s / base_s:.2f}x")
    print(f"training-stack modules imported by the gateway: {heavy or 'none'}")
    assert not heavy, f"the gateway imported {heavy}"
    assert serve_s <= 3.0, f"serve took {serve_s:.2f} s (> 3 s)"


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
