"""`tunebridge demo` as a user runs it: a real subprocess, its own data dir, the real trainer.

The SmolLM2 directory converted once for the other SmolLM2 test is linked into the temp data dir
(the demo would otherwise download and convert it, ~30 s and ~600 MB). Two steps with an eval
holdout keep it short while every part runs: install check, upload, job creation, the Poller
driving the trainer subprocess, metrics into SQLite, summary, adapter and chart.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backends.local.catalogue import SMOLLM2_NAME
from tests.local.conftest import MODELS_DIR, NEEDS_SMOLLM2

pytestmark = [pytest.mark.slow, NEEDS_SMOLLM2]


def tunebridge_command() -> list[str]:
    script = Path(sys.executable).with_name("tunebridge")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tunebridge.cli"]


def printed_path(label: str, text: str) -> Path:
    match = re.search(rf"^{label}: (/\S+)$", text, flags=re.MULTILINE)
    assert match, f"no '{label}:' line in:\n{text}"
    return Path(match.group(1))


@pytest.mark.timeout(900)  # ~1 min on a free machine; a step can take 40 s under heavy load
def test_demo_trains_and_reports(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    (data_dir / "models").mkdir(parents=True)
    (data_dir / "models" / SMOLLM2_NAME).symlink_to(MODELS_DIR / SMOLLM2_NAME)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEBRIDGE_")}
    env.update(TUNEBRIDGE_DATA_DIR=str(data_dir), COLUMNS="120")
    done = subprocess.run(
        [*tunebridge_command(), "demo", "--max-steps", "2", "--eval-holdout", "0.1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=840,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert re.search(r"job_\w+ succeeded in \d+ s \(lora-cpu-fp32, 2 steps\)", done.stdout)
    assert "Loss summary" in done.stdout
    assert re.search(r"train\s*│ [\d.]+ @ 1\s*│ [\d.]+ @ 2", done.stdout), done.stdout
    assert re.search(r"eval\s*│ [\d.]+ @ \d", done.stdout), done.stdout
    assert "installing" not in done.stderr  # the linked model was found, nothing downloaded
    assert "2/2 steps" in done.stderr  # the progress bar reached the end
    adapter = printed_path("adapter", done.stdout)
    assert adapter.is_relative_to(data_dir.resolve())
    assert (adapter / "adapter_model.safetensors").stat().st_size > 1_000_000
    chart = printed_path("loss chart", done.stdout)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
