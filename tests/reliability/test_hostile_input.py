"""A generated corpus of malformed JSONL POSTed to a real `tunebridge serve`: every file gets a
4xx that names its lines, never a 5xx, and the server's resident memory stays bounded (read from
/proc while the corpus runs). Also: uploaded file names never become paths."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import chat_line, jsonl
from tests.e2e.serve_process import ServeProcess
from tests.reliability.stack import START_TIMEOUT_S

pytestmark = pytest.mark.slow

MAX_LINE = 1 << 20
RSS_GROWTH_MB = 200  # generous: the corpus is ~50 MB and must never be held in memory at once
GOOD = jsonl([chat_line("hi", "hello")])


def corpus() -> dict[str, tuple[bytes, int | None]]:
    """name -> (body, the first line that must be reported)."""
    return {
        "truncated line": (GOOD + b'{"messages": [{"role": "user", "con\n' + GOOD, 2),
        "one line over max_line_bytes": (
            GOOD + b'{"messages": [{"role": "user", "content": "' + b"x" * (40 << 20) + b'"}]}\n',
            2),
        "100k nested arrays": (GOOD + b"[" * 100_000 + b"\n", 2),
        "50k nested objects": (GOOD + b'{"a":' * 50_000 + b"\n", 2),
        "invalid UTF-8": (GOOD + b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}\n', 2),
        "NUL bytes": (GOOD + b'{"messages": [{"role": "user", "content": "a"}]}\x00\n', 2),
        "bare NUL line": (GOOD + b"\x00" * 4096 + b"\n", 2),
        "a million tiny lines": (b"{}\n" * 1_000_000, 1),
        "binary noise": (bytes(range(256)) * 4096, 1),
        "empty body": (b"", None),
    }


def gzip_bomb(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    block = b" " * (1 << 20)
    return b"".join(packer.compress(block) for _ in range(size >> 20)) + packer.flush()


class RssWatch:
    """Samples VmRSS of a process every 50 ms; `peak_mb` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak_mb = max(self.peak_mb, self.rss_mb())
            except OSError:
                return

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(2)


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """One server for the module, on SQLite: what is tested here happens before any row is
    written, and a start costs seconds of CI time."""
    root = tmp_path_factory.mktemp("hostile")
    process = ServeProcess(root / "var", f"sqlite:///{root / 'tunebridge.db'}",
                           TUNEBRIDGE_MAX_LINE_BYTES=str(MAX_LINE),
                           TUNEBRIDGE_MAX_UPLOAD_BYTES=str(64 << 20))
    process.start(timeout=START_TIMEOUT_S)
    yield process
    process.stop()


def test_malformed_corpus_gets_line_numbered_4xx_and_memory_stays_bounded(
        serve: ServeProcess) -> None:
    assert serve.proc is not None
    http = httpx.Client(base_url=serve.url, timeout=300,
                        headers={"Authorization": f"Bearer {serve.admin_key()}"})
    results = {}
    with RssWatch(serve.proc.pid) as rss:
        baseline = rss.rss_mb()
        for name, (body, line) in corpus().items():
            response = http.post("/api/datasets", content=body)
            results[name] = response.status_code
            assert 400 <= response.status_code < 500, (name, response.status_code,
                                                        response.text[:300])
            error = response.json()["error"]
            assert error["code"] and error["message"], name
            if line is not None:
                lines = [p["line"] for p in error["problems"]]
                assert lines and lines[0] == line, (name, error["problems"][:3])
                assert len(error["problems"]) <= 100, "problems are capped"
        # A gzip bomb (256 MiB of spaces in ~250 KiB) and a corrupt gzip stream.
        response = http.post("/api/datasets", content=gzip_bomb(256 << 20),
                             headers={"Content-Encoding": "gzip"})
        results["gzip bomb"] = response.status_code
        assert response.status_code == 413, response.text[:300]
        corrupt = b"\x1f\x8b\x08\x00" + b"\x00" * (1 << 20)
        response = http.post("/api/datasets", files={"file": ("bomb.jsonl.gz", corrupt)})
        results["corrupt gzip"] = response.status_code
        assert 400 <= response.status_code < 500, response.text[:300]
        # Over the upload cap: 413 before (or while) reading, not after buffering.
        response = http.post("/api/datasets", content=b"x" * (65 << 20))
        assert response.status_code == 413
    print(f"corpus answers {results}; serve RSS baseline {baseline:.0f} MB, "
          f"peak {rss.peak_mb:.0f} MB")
    assert rss.peak_mb < baseline + RSS_GROWTH_MB, f"serve RSS peaked at {rss.peak_mb:.0f} MB"
    assert http.get("/healthz").status_code == 200
    blobs = serve.data_dir / "blobs"
    assert list(blobs.rglob("*.jsonl")) == [], "a refused file was kept"


def test_uploaded_file_names_never_touch_paths(serve: ServeProcess) -> None:
    tmp_path = serve.data_dir.parent
    http = httpx.Client(base_url=serve.url, timeout=30,
                        headers={"Authorization": f"Bearer {serve.admin_key()}"})
    names = ["../../etc/passwd", "/tmp/evil.jsonl", "..\\..\\windows\\win.ini",
             "a/../../../../b.jsonl", "x\x00y.jsonl", "CON", "." * 300]
    before = set(tmp_path.rglob("*"))
    for index, name in enumerate(names):
        data = jsonl([chat_line(f"name {index}", "a")])
        by_query = http.post("/api/datasets", content=data, params={"filename": name[:255]})
        by_form = http.post("/api/datasets", files={"file": (name, data + GOOD)})
        for response in (by_query, by_form):
            assert response.status_code in (200, 201, 422), response.text
            if response.status_code != 422:
                stored = response.json()
                assert "/" not in stored["filename"] and "\\" not in stored["filename"]
                assert "\x00" not in stored["filename"]
    created = set(tmp_path.rglob("*")) - before
    blob_root = serve.data_dir / "blobs"
    for path in created:
        if path.is_file() and blob_root in path.parents:
            # blobs/<first two hex digits>/<sha256>.jsonl, nothing else
            assert path.parent.parent == blob_root, path
            assert path.stem.startswith(path.parent.name) and len(path.stem) == 64, path
            assert path.suffix == ".jsonl", path
    assert not Path("/tmp/evil.jsonl").exists()
    assert not any("passwd" in str(p) or "evil" in str(p) or "win.ini" in str(p)
                   for p in created)
