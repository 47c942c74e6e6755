"""The CLI against a running `serve`: keys, upload with problems, start, watch, cancel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import chat_line, jsonl
from tests.e2e.serve_process import ServeProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    process = ServeProcess(tmp_path / "var", f"sqlite:///{tmp_path / 'cli.db'}",
                           SCRIPTED_STEP_SECONDS="0.02")
    process.start()
    yield process
    process.stop()


def cli(serve: ServeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**serve.env, "TUNEBRIDGE_API_URL": serve.url}
    env.pop("TUNEBRIDGE_API_KEY", None)
    return subprocess.run([sys.executable, "-m", "tunebridge.cli", *args], env=env,
                          cwd=serve.data_dir.parent, capture_output=True, text=True,
                          timeout=120)


def test_cli_round_trip(serve: ServeProcess, tmp_path: Path) -> None:
    created = cli(serve, "keys", "create", "--scope", "admin", "--name", "ci", "--json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["key"]
    assert key.startswith("tb_")
    os.environ.pop("TUNEBRIDGE_API_KEY", None)

    good = tmp_path / "train.jsonl"
    good.write_bytes(jsonl([chat_line(f"q{i}", f"a{i}") for i in range(12)]))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(good.read_bytes() + b"{oops\n")

    rejected = cli(serve, "datasets", "upload", str(bad), "--api-key", key)
    assert rejected.returncode == 1
    assert "line 13" in rejected.stderr and "invalid_json" in rejected.stderr

    uploaded = cli(serve, "datasets", "upload", str(good), "--api-key", key, "--json")
    assert uploaded.returncode == 0, uploaded.stderr
    dataset_id = json.loads(uploaded.stdout)["id"]

    started = cli(serve, "jobs", "start", "--dataset", dataset_id, "--model", "m",
                  "--hp", "n_epochs=2", "--api-key", key, "--json")
    assert started.returncode == 0, started.stderr
    job_id = json.loads(started.stdout)["id"]

    watched = cli(serve, "jobs", "watch", job_id, "--interval", "0.2", "--api-key", key)
    assert watched.returncode == 0, watched.stderr
    assert "step 20" in watched.stdout and f"{job_id} succeeded" in watched.stdout

    shown = cli(serve, "jobs", "show", job_id, "--json", "--api-key", key)
    assert json.loads(shown.stdout)["hyperparameters"]["n_epochs"] == 2

    long_job = json.loads(cli(serve, "jobs", "start", "--dataset", dataset_id, "--model", "m",
                              "--opt", "scripted_steps=100000", "--api-key", key,
                              "--json").stdout)["id"]
    cancelled = cli(serve, "jobs", "cancel", long_job, "--api-key", key)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.split()[1] in ("cancelled", "cancelling")
    listed = json.loads(cli(serve, "jobs", "list", "--json", "--api-key", key).stdout)
    assert {j["id"] for j in listed["data"]} == {job_id, long_job}

    missing = cli(serve, "jobs", "show", "job_missing", "--api-key", key)
    assert missing.returncode == 1 and "job_not_found" in missing.stderr


def test_keys_list_and_revoke(serve: ServeProcess) -> None:
    key_id = json.loads(cli(serve, "keys", "create", "--scope", "read", "--json").stdout)["id"]
    assert cli(serve, "keys", "revoke", key_id).returncode == 0
    listed = {k["id"]: k for k in json.loads(cli(serve, "keys", "list", "--json").stdout)}
    assert listed[key_id]["revoked"] is True
    bad_scope = cli(serve, "keys", "create", "--scope", "root")
    assert bad_scope.returncode == 1 and "Scopes must be among" in bad_scope.stderr



def test_validate_command_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_bytes(jsonl([chat_line(f"q{i}", f"a{i}") for i in range(12)]))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(good.read_bytes() + b"[1]\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tunebridge.cli", "validate", *args],
                              capture_output=True, text=True, timeout=120)

    ok = run(str(good), "--model", "gpt-4o-mini-2024-07-18", "--backend", "openai", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["num_examples"] == 12
    broken = run(str(bad), "--json")
    assert broken.returncode == 1
    assert [(p["line"], p["code"]) for p in json.loads(broken.stdout)["problems"]] == [
        (13, "not_object")]
    assert run(str(tmp_path / "missing.jsonl")).returncode == 2


def test_validate_spreads_a_large_file_over_worker_processes(tmp_path: Path) -> None:
    """64 MB and up: `--workers 2` validates byte ranges in two processes with the same
    report a single process gives (line numbers across the cut included)."""
    big = tmp_path / "big.jsonl"
    rows = 0
    with big.open("wb") as out:
        while out.tell() < 64 << 20:
            rows += 1
            out.write(jsonl([chat_line(f"q{rows} " + "q" * 2000, "a" * 2000)]))
            if rows == 9000:  # about the middle, where two ranges meet
                out.write(jsonl([chat_line(f"q{rows} " + "q" * 2000, "a" * 2000)]))
        out.write(b"[1]\n")

    def run(*args: str) -> dict[str, Any]:
        done = subprocess.run([sys.executable, "-m", "tunebridge.cli", "validate", str(big),
                               "--json", *args], capture_output=True, text=True, timeout=600)
        assert done.returncode == 1, done.stderr
        return dict(json.loads(done.stdout))

    for report in (run("--workers", "2"), run("--workers", "1")):
        assert report["num_examples"] == rows + 1
        assert [(p["line"], p["code"]) for p in report["problems"]] == [
            (9001, "duplicate_example"), (rows + 2, "not_object")]
