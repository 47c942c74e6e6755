"""TUNEBRIDGE_VALIDATION_WORKERS: the server validates big uploads and a job's training file in
worker processes (spawned, beside the server's threads) with the report one process gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import LiveApi, chat_line, jsonl
from tunebridge.assessment import JobPolicy, assess
from tunebridge.settings import Settings

MODEL = "gpt-4o-mini-2024-07-18"
WORDS = ["the", "model", "learns", "a", "stream", "of", "tokens", "from", "each", "line",
         "of", "the", "file"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"validation_workers": 2})


def _big_file(path: Path, *, broken: bool) -> tuple[Path, int]:
    """Just over 64 MB (the parallel threshold); a duplicate mid-file, a bad last line."""
    rows = 0
    with path.open("wb") as out:
        while out.tell() < 64 << 20:
            rows += 1
            text = " ".join(WORDS[(rows + i) % len(WORDS)] for i in range(300))
            line = jsonl([chat_line(f"{rows}: {text}", text)])
            out.write(line)
            if rows == 5000:
                out.write(line)
        if broken:
            out.write(b"[1]\n")
    return path, rows


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_big_upload_validated_by_workers_reports_true_lines(live: LiveApi,
                                                            tmp_path: Path) -> None:
    path, rows = _big_file(tmp_path / "big.jsonl", broken=True)
    with live.client() as http, path.open("rb") as body:
        response = http.post("/api/datasets", content=body, timeout=300)
    assert response.status_code == 422, response.text
    problems = [(p["line"], p["code"]) for p in response.json()["error"]["problems"]]
    assert problems == [(5001, "duplicate_example"), (rows + 2, "not_object")]


@pytest.mark.slow
def test_job_assessment_counts_tokens_in_workers_as_one_process_does(tmp_path: Path) -> None:
    path, rows = _big_file(tmp_path / "big.jsonl", broken=False)

    def tokens(workers: int) -> dict[str, object]:
        policy = JobPolicy(models_dir=tmp_path, validation_workers=workers)
        report = assess(policy=policy, backend="openai", base_model=MODEL, epochs=1,
                        training=path, validation=None).report
        assert report.num_examples == rows + 1 and report.tokens is not None
        return report.tokens.as_dict()

    assert tokens(2) == tokens(1)
