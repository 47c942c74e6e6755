"""`POST /api/health` and `tunebridge health FILE --json` on a Hugging Face trainer_state."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import LiveApi


def _overfit_state() -> dict[str, object]:
    history: list[dict[str, float]] = []
    for step in range(10, 310, 10):
        history.append({"step": step, "epoch": step / 100, "loss": 2.0 - step / 200})
        if step % 50 == 0:
            eval_loss = 1.9 - step / 250 if step <= 150 else 1.3 + (step - 150) / 150
            history.append({"step": step, "epoch": step / 100, "eval_loss": eval_loss})
    return {"log_history": history, "max_steps": 300}


def test_http_and_cli_agree_on_an_overfitting_run(live: LiveApi, tmp_path: Path) -> None:
    state = tmp_path / "trainer_state.json"
    state.write_text(json.dumps(_overfit_state()))
    with live.client() as http:
        response = http.post("/api/health", content=state.read_bytes())
        bad = http.post("/api/health", content=b"not metrics at all")
    assert response.status_code == 200, response.text
    report = response.json()
    assert [f["kind"] for f in report["findings"]] == ["overfitting"]
    assert report["best_eval_step"] == 150
    assert bad.status_code == 422
    cli = subprocess.run([sys.executable, "-m", "tunebridge.cli", "health", str(state), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == report
