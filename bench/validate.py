"""Validation throughput on a generated chat JSONL, against baselines measured in the same run.

Each variant runs in its own subprocess so its peak RSS is its own:
- `json.loads` per line: the floor any validator pays to parse the file;
- ours, structure only (no token counting), and ours in full (checks + tiktoken counts +
  duplicate hashes + statistics), as the upload path runs it for an OpenAI model: as configured
  by default (`ours_full`: token counting inline on a machine of two cores or fewer), with two
  counting threads beside the parsing thread (`ours_threads`), and with one worker process per
  core (`ours_parallel`);
- the OpenAI cookbook's data-preparation recipe, re-implemented faithfully: json.loads of all
  lines into a list, per-example format checks, tiktoken per message value, assistant tokens,
  percentiles and billing.

Both wall-clock and CPU seconds are printed: on a shared machine the wall time of a variant
depends on how busy the other tenants are, CPU seconds much less (threads add theirs).

Usage: python bench/validate.py [--mb 100] [--model gpt-4o-mini-2024-07-18] [--keep PATH]
       [--path EXISTING.jsonl] [--skip VARIANT ...]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_WORDS = (
    "the", "model", "data", "train", "loss", "token", "batch", "answer", "question", "because",
    "which", "gradient", "learning", "rate", "epoch", "café", "naïve", "résumé", "東京", "数据",
    "über", "straße", "value", "check", "line", "file", "cost", "GPU", "memory", "stream",
    "json", "schema", "role", "user", "assistant", "system", "note", "fix", "step",
)
_SYSTEMS = [f"You are assistant #{n}. Answer briefly and cite the policy section." for n in
            range(20)]


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def generate(path: Path, megabytes: int, seed: int = 0) -> int:
    """A chat file of about `megabytes` MB: varied lengths, repeated system prompts."""
    rng, target, written, lines = random.Random(seed), megabytes * 1_000_000, 0, 0
    with path.open("w", encoding="utf-8") as out:
        while written < target:
            example = {"messages": [
                {"role": "system", "content": rng.choice(_SYSTEMS)},
                {"role": "user", "content": _sentence(rng, rng.randint(5, 60))},
                {"role": "assistant", "content": _sentence(rng, rng.randint(20, 300))},
            ]}
            line = json.dumps(example, ensure_ascii=False) + "\n"
            out.write(line)
            written += len(line.encode())
            lines += 1
    return lines


def run_json_loads(path: Path, model: str) -> dict[str, Any]:
    count = 0
    with path.open("rb") as stream:
        for line in stream:
            json.loads(line)
            count += 1
    return {"examples": count}


def run_ours(path: Path, model: str, tokens: bool = True, threads: int = 0
             ) -> dict[str, Any]:
    from tunebridge.validation import ValidationOptions, validate_stream

    report = validate_stream(path.open("rb"), ValidationOptions(
        backend="openai", model=model if tokens else None, token_threads=threads))
    stats = report.tokens.as_dict() if report.tokens else {}
    return {"examples": report.num_examples, "ok": report.ok, "total_tokens": stats.get("total"),
            "p95": stats.get("p95")}


def run_structure(path: Path, model: str) -> dict[str, Any]:
    return run_ours(path, model, tokens=False)


def run_threads(path: Path, model: str) -> dict[str, Any]:
    return run_ours(path, model, threads=2)


def run_parallel(path: Path, model: str) -> dict[str, Any]:
    from tunebridge.validation import validate_file

    workers = int(os.environ.get("BENCH_WORKERS") or len(os.sched_getaffinity(0)))
    report = validate_file(path, backend="openai", model=model, workers=workers)
    stats = report.tokens.as_dict() if report.tokens else {}
    return {"examples": report.num_examples, "ok": report.ok, "total_tokens": stats.get("total"),
            "p95": stats.get("p95"), "workers": workers}


def run_cookbook(path: Path, model: str) -> dict[str, Any]:
    """The cookbook's recipe, kept as written there (including its second assistant pass)."""
    import numpy as np

    from tunebridge.tokens import encoding_name_for_model, prepare_tiktoken_cache

    prepare_tiktoken_cache()
    import tiktoken

    encoding = tiktoken.get_encoding(encoding_name_for_model(model))
    with path.open(encoding="utf-8") as f:
        dataset = [json.loads(line) for line in f]
    errors = _cookbook_format_errors(dataset)

    def num_tokens_from_messages(messages: list[dict[str, Any]]) -> int:
        num_tokens = 0
        for message in messages:
            num_tokens += 3
            for key, value in message.items():
                num_tokens += len(encoding.encode(value))
                if key == "name":
                    num_tokens += 1
        return num_tokens + 3

    convo_lens, assistant_lens = [], []
    for ex in dataset:
        convo_lens.append(num_tokens_from_messages(ex["messages"]))
        assistant_lens.append(sum(len(encoding.encode(m["content"])) for m in ex["messages"]
                                  if m["role"] == "assistant"))
    p95 = float(np.quantile(convo_lens, 0.95))
    billed = sum(min(65_536, n) for n in convo_lens)
    return {"examples": len(dataset), "errors": sum(errors.values()),
            "total_tokens": sum(convo_lens), "p95": p95, "billed": billed}


def _cookbook_format_errors(dataset: list[Any]) -> dict[str, int]:
    format_errors: dict[str, int] = defaultdict(int)
    for ex in dataset:
        if not isinstance(ex, dict):
            format_errors["data_type"] += 1
            continue
        messages = ex.get("messages", None)
        if not messages:
            format_errors["missing_messages_list"] += 1
            continue
        for message in messages:
            if "role" not in message or "content" not in message:
                format_errors["message_missing_key"] += 1
            if any(k not in ("role", "content", "name", "function_call", "weight")
                   for k in message):
                format_errors["message_unrecognized_key"] += 1
            if message.get("role", None) not in ("system", "user", "assistant", "function"):
                format_errors["unrecognized_role"] += 1
            content = message.get("content", None)
            if (not content and not message.get("function_call")) or not isinstance(content,
                                                                                     str):
                format_errors["missing_content"] += 1
        if not any(message.get("role", None) == "assistant" for message in messages):
            format_errors["example_missing_assistant_message"] += 1
    return format_errors


VARIANTS = {"json_loads": run_json_loads, "ours_structure": run_structure,
            "ours_full": run_ours, "ours_threads": run_threads, "ours_parallel": run_parallel,
            "cookbook": run_cookbook}


def child(variant: str, path: Path, model: str) -> None:
    """Runs one variant; prints seconds, peak RSS and its result as one JSON line."""
    if variant != "json_loads":  # load encodings outside timing
        from tunebridge.tokens import (
            encoding_batch_counter,
            encoding_counter,
            encoding_name_for_model,
            tiktoken_counter,
        )

        name = encoding_name_for_model(model)
        (tiktoken_counter if variant == "cookbook" else encoding_counter)(name)("warm up")
        batch = encoding_batch_counter(name) if variant == "ours_threads" else None
        if batch is not None:
            batch(["warm up"])  # the threads count with tiktoken
    start, cpu = time.perf_counter(), time.process_time()
    result = VARIANTS[variant](path, model)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mb": peak_mb,
                      "worker_peak_rss_mb": workers.ru_maxrss / 1024,
                      "worker_cpu_seconds": workers.ru_utime + workers.ru_stime, **result}))


def measure(variant: str, path: Path, model: str) -> dict[str, Any]:
    """Runs one variant in a child, sampling its process tree's memory every 50 ms: summed RSS
    counts pages the workers share with their parent once per process, summed PSS splits them
    (the memory the machine really gives the run)."""
    child = subprocess.Popen([sys.executable, __file__, "--child", variant, "--path", str(path),
                              "--model", model], stdout=subprocess.PIPE, text=True)
    peak_rss = peak_pss = 0
    while child.poll() is None:
        rss, pss = _tree_memory(child.pid)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.05)
    out = child.stdout.read() if child.stdout else ""
    if child.returncode:
        raise SystemExit(f"{variant} failed with exit code {child.returncode}")
    result = dict(json.loads(out.strip().splitlines()[-1]))
    return {**result, "tree_rss_mb": peak_rss / 1024, "tree_pss_mb": peak_pss / 1024}


def _children_files(pid: int) -> dict[int, list[int]] | None:
    """Descendants from /proc/PID/task/PID/children (cheap); None where the kernel lacks it."""
    found: dict[int, list[int]] = {}
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            text = Path(f"/proc/{current}/task/{current}/children").read_text()
        except FileNotFoundError:
            if current == pid:
                return None
            continue
        except OSError:
            continue
        found[current] = [int(child) for child in text.split()]
        pending.extend(found[current])
    return found


def _children_by_scan() -> dict[int, list[int]]:
    parents: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(fields[1])].append(int(stat.parent.name))
    return parents


def _tree_memory(pid: int) -> tuple[int, int]:
    """Summed RSS and PSS (kB) of a process and its descendants; 0 for ones already gone.
    Where the kernel has no smaps_rollup (gVisor), PSS falls back to RSS."""
    parents = _children_files(pid) or _children_by_scan()
    rss = pss = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        pending.extend(parents.get(current, []))
        try:
            rows = Path(f"/proc/{current}/smaps_rollup").read_text().splitlines()
        except OSError:
            try:
                rows = Path(f"/proc/{current}/status").read_text().splitlines()
            except OSError:
                continue
            rows += [row.replace("VmRSS", "Pss") for row in rows if row.startswith("VmRSS")]
        for row in rows:
            key, _, value = row.partition(":")
            if key in ("Rss", "VmRSS"):
                rss += int(value.split()[0])
            elif key == "Pss":
                pss += int(value.split()[0])
    return rss, pss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--model", default="gpt-4o-mini-2024-07-18")
    parser.add_argument("--keep", type=Path, help="write the generated file here and keep it")
    parser.add_argument("--existing", type=Path, help="bench this file instead of generating")
    parser.add_argument("--skip", nargs="*", default=[], choices=sorted(VARIANTS))
    parser.add_argument("--child", choices=sorted(VARIANTS))
    parser.add_argument("--path", type=Path)
    parser.add_argument("--workers", type=int, help="ours_parallel's processes (default: the "
                        "CPUs this process may run on)")
    args = parser.parse_args()
    if args.workers:
        os.environ["BENCH_WORKERS"] = str(args.workers)  # the child variants read it
    if args.child:
        child(args.child, args.path, args.model)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = args.existing or args.keep or Path(tmp) / "bench.jsonl"
        lines = sum(1 for _ in path.open("rb")) if args.existing else generate(path, args.mb)
        size_mb = path.stat().st_size / 1e6
        load = os.getloadavg()[0]
        print(f"file: {size_mb:.1f} MB, {lines} chat examples, model {args.model}, "
              f"{len(os.sched_getaffinity(0))} CPUs, load average {load:.1f}")
        results = {v: measure(v, path, args.model) for v in VARIANTS if v not in args.skip}
    _print(results, size_mb)


def _print(results: dict[str, dict[str, Any]], size_mb: float) -> None:
    for name, result in results.items():
        workers = ""
        if "workers" in result:
            workers = (f"  (+{result['workers']} workers, each <= "
                       f"{result['worker_peak_rss_mb']:.0f} MB RSS, "
                       f"{result['worker_cpu_seconds']:.1f} s CPU in all)")
        print(f"{name:15s} {result['seconds']:7.2f} s  {size_mb / result['seconds']:7.1f} MB/s  "
              f"cpu {result['cpu_seconds']:7.2f} s  peak RSS {result['peak_rss_mb']:7.1f} MB  "
              f"all processes: peak PSS {result['tree_pss_mb']:7.1f} MB, summed RSS "
              f"{result['tree_rss_mb']:7.1f} MB  tokens={result.get('total_tokens')}{workers}")
    base = results.get("json_loads")
    for name in ("ours_structure", "ours_full", "ours_threads", "ours_parallel"):
        if base and name in results:
            ratio = results[name]["seconds"] / base["seconds"]
            throughput = base["seconds"] / results[name]["seconds"]
            print(f"{name}: {ratio:.2f}x the time of json_loads "
                  f"(throughput ratio {throughput:.3f})")
    for name in ("ours_full", "ours_threads", "ours_parallel"):
        if "cookbook" in results and name in results:
            ours, theirs = results[name], results["cookbook"]
            cpu = ours["cpu_seconds"] + ours["worker_cpu_seconds"]
            print(f"{name} vs cookbook: {theirs['seconds'] / ours['seconds']:.2f}x faster "
                  f"(wall), {theirs['cpu_seconds'] / cpu:.2f}x less CPU (workers' included); "
                  f"peak PSS of all processes {ours['tree_pss_mb']:.0f} MB vs "
                  f"{theirs['tree_pss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
