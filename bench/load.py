"""Load on loopback: concurrent 10 MB uploads and signed Slack commands against `tunebridge
serve` while it polls a few hundred running jobs. All must succeed; serve's RSS must stay
bounded; latency percentiles are printed per kind, against a baseline measured in the same run
on the same server (GET /healthz with nothing else going on).

Jobs run on the scripted test backend (loaded as a plugin), Slack is the fake Web API from
tests/fakes in HTTP mode; everything is on 127.0.0.1 and the client shares the machine's cores
with the server, so absolute numbers include the client's own CPU time.

    .venv/bin/python bench/load.py [--uploads 100] [--upload-mb 10] [--commands 50] \
        [--jobs 200] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.serve_process import ServeProcess  # noqa: E402
from tests.fakes.slack_server import FakeSlack  # noqa: E402
from tests.slack.support import SIGNING_SECRET, SignedSlack  # noqa: E402

LINE_BYTES = 1024


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, rss_mb(self.pid))


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0}
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered), 1),
            "p99_ms": round(pick(0.99), 1), "max_ms": round(ordered[-1], 1)}


async def upload_body(index: int, size: int) -> AsyncIterator[bytes]:
    """A valid chat JSONL file of `size` bytes, distinct per index, generated as it is sent
    (bytes formatting, so the client's CPU stays out of the server's latency)."""
    pad = b"x" * (LINE_BYTES - 120)
    template = (b'{"messages": [{"role": "user", "content": "upload %d line %d %s"}, '
                b'{"role": "assistant", "content": "answer %d"}]}\n')
    sent, line_no = 0, 0
    while sent < size:
        lines = []
        for _ in range(1024):
            lines.append(template % (index, line_no, pad, line_no))
            line_no += 1
        chunk = b"".join(lines)[: size - sent]
        chunk = chunk[: chunk.rfind(b"\n") + 1]  # whole lines only
        if not chunk:
            return
        sent += len(chunk)
        yield chunk
        await asyncio.sleep(0)


async def timed(samples: list[float], failures: list[str], kind: str, call: Any) -> None:
    started = time.perf_counter()
    try:
        response = await call
        ok = response.status_code < 300
        detail = f"{kind}: {response.status_code} {response.text[:200]}"
    except httpx.HTTPError as exc:
        ok, detail = False, f"{kind}: {exc!r}"
    samples.append((time.perf_counter() - started) * 1000)
    if not ok:
        failures.append(detail)


async def drive(serve: ServeProcess, slack: FakeSlack, args: argparse.Namespace,
                job_ids: list[str]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {serve.admin_key()}"}
    limits = httpx.Limits(max_connections=args.uploads + args.commands + 50)
    async with httpx.AsyncClient(base_url=serve.url, headers=headers, timeout=600,
                                 limits=limits) as http:
        baseline: list[float] = []
        for _ in range(50):
            await timed(baseline, [], "healthz", http.get("/healthz"))
        signer = SignedSlack(serve.url, slack.response_url())
        samples: dict[str, list[float]] = {"upload": [], "slack": [], "read": []}
        failures: list[str] = []
        size = args.upload_mb << 20
        calls = [timed(samples["upload"], failures, "upload", http.post(
            "/api/datasets", content=upload_body(i, size),
            headers={"Content-Type": "application/jsonl"})) for i in range(args.uploads)]
        for i in range(args.commands):
            text = f"status {job_ids[i % len(job_ids)]}" if i % 2 else "list running"
            body = signer.command_body(text, user=f"U{i}")
            calls.append(timed(samples["slack"], failures, "slack", http.post(
                "/slack/events", content=body.encode(), headers=signer.signed_headers(body))))
        for i in range(args.commands):
            calls.append(timed(samples["read"], failures, "read",
                               http.get(f"/api/jobs/{job_ids[i % len(job_ids)]}")))
        started = time.perf_counter()
        await asyncio.gather(*calls)
        wall = time.perf_counter() - started
    api = samples["upload"] + samples["slack"] + samples["read"]
    return {"baseline_healthz": percentiles(baseline), "wall_s": round(wall, 1),
            "failures": failures, "api": percentiles(api),
            **{kind: percentiles(values) for kind, values in samples.items()}}


def create_jobs(serve: ServeProcess, count: int) -> list[str]:
    http = httpx.Client(base_url=serve.url, timeout=60,
                        headers={"Authorization": f"Bearer {serve.admin_key()}"})
    data = b"".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                             {"role": "assistant", "content": f"a{i}"}]}
                               ).encode() + b"\n" for i in range(12))
    dataset = http.post("/api/datasets", content=data).json()["id"]
    ids: list[str] = []
    for _ in range(count):
        created = http.post("/api/jobs", json={
            "training_dataset_id": dataset, "base_model": "m",
            "options": {"scripted_steps": 100_000, "scripted_step_seconds": 0.5}})
        if created.status_code != 201:
            raise SystemExit(f"job {len(ids) + 1} refused: {created.text[:500]}")
        ids.append(created.json()["id"])
    return ids


def metric_steps(serve: ServeProcess, job_ids: list[str]) -> int:
    http = httpx.Client(base_url=serve.url, timeout=60,
                        headers={"Authorization": f"Bearer {serve.admin_key()}"})
    total = 0
    for job_id in job_ids[:20]:
        data = http.get(f"/api/jobs/{job_id}/metrics", params={"limit": 1000}).json()["data"]
        total += len(data)
    return total


def progressed(serve: ServeProcess, job_ids: list[str], before: int, *, within_s: float) -> bool:
    """Whether polls stored new steps since `before` was counted, waiting up to `within_s`
    (a burst shorter than the poll interval may end before the next tick)."""
    deadline = time.monotonic() + within_s
    while metric_steps(serve, job_ids) <= before:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@contextmanager
def private_schema(url: str | None) -> Iterator[str | None]:
    """A PostgreSQL URL gets a fresh schema of its own for the run, dropped afterwards: serve
    mints its admin key only on an empty database, and runs must not see each other's jobs."""
    if url is None or not url.startswith("postgresql") or "search_path" in url:
        yield url  # SQLite, or a schema chosen by the caller (the tests' own)
        return
    import psycopg

    plain = "postgresql://" + url.split("://", 1)[1]
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(plain, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, FakeSlack() as slack, \
            private_schema(args.database_url) as database_url:
        serve = ServeProcess(
            Path(tmp) / "var", database_url or f"sqlite:///{Path(tmp) / 'tunebridge.db'}",
            TUNEBRIDGE_SLACK_BOT_TOKEN=slack.world.bot_token,
            TUNEBRIDGE_SLACK_SIGNING_SECRET=SIGNING_SECRET,
            TUNEBRIDGE_SLACK_API_URL=slack.api_url, TUNEBRIDGE_SLACK_POST_INTERVAL_S="0",
            TUNEBRIDGE_POLL_INTERVAL_S=str(args.poll_interval),
            TUNEBRIDGE_OUTBOX_INTERVAL_S="0.5", TUNEBRIDGE_LOG_LEVEL="warning")
        serve.start(timeout=120)
        try:
            assert serve.proc is not None
            job_ids = create_jobs(serve, args.jobs)
            time.sleep(3 * args.poll_interval)  # every job submitted and polled once
            idle_rss = rss_mb(serve.proc.pid)
            steps_before = metric_steps(serve, job_ids)
            sampler = RssSampler(serve.proc.pid)
            sampler.start()
            result = asyncio.run(drive(serve, slack, args, job_ids))
            if result["failures"]:  # what serve logged about them (warnings and up)
                result["serve_log_tail"] = serve.output()[-4000:]
            sampler.stop.set()
            sampler.join()
            statuses = httpx.get(f"{serve.url}/api/jobs", params={"limit": 200, "status": [
                "failed"]}, headers={"Authorization": f"Bearer {serve.admin_key()}"}).json()
            result.update(
                rss_idle_mb=round(idle_rss, 1), rss_peak_mb=round(sampler.peak, 1),
                jobs=args.jobs, failed_jobs=len(statuses["data"]),
                polls_progressed=progressed(serve, job_ids, steps_before,
                                            within_s=3 * args.poll_interval),
                uploads=args.uploads, upload_mb=args.upload_mb, commands=args.commands,
                alive=httpx.get(f"{serve.url}/healthz").status_code == 200)
        finally:
            serve.stop()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=100)
    parser.add_argument("--upload-mb", type=int, default=10)
    parser.add_argument("--commands", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--database-url", default=None,
                        help="e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test (the run "
                             "gets a schema of its own); default: SQLite in a temp dir")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return
    database = "PostgreSQL" if args.database_url else "SQLite"
    print(f"[{database}] {args.uploads} x {args.upload_mb} MB uploads, {args.commands} signed "
          f"Slack commands and {args.commands} job reads, all at once, while {args.jobs} jobs "
          f"are polled every {args.poll_interval} s (wall {result['wall_s']} s)")
    for kind in ("baseline_healthz", "upload", "slack", "read", "api"):
        row = result[kind]
        print(f"  {kind:17} n={row.get('n')} p50={row.get('p50_ms')} ms "
              f"p99={row.get('p99_ms')} ms max={row.get('max_ms')} ms")
    print(f"  failures: {len(result['failures'])} {result['failures'][:3]}")
    if result.get("serve_log_tail"):
        print(f"  serve log tail:\n{result['serve_log_tail']}")
    print(f"  serve RSS idle {result['rss_idle_mb']} MB, peak {result['rss_peak_mb']} MB; "
          f"failed jobs {result['failed_jobs']}; polls progressed {result['polls_progressed']}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
