"""Settings: TUNEBRIDGE_ variables, `.env`, and secrets that never print."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from tunebridge.log import JsonFormatter
from tunebridge.settings import Settings


def test_env_prefix_and_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "TUNEBRIDGE_POLL_INTERVAL_S=3.5\nTUNEBRIDGE_OPENAI_API_KEY=sk-dotenv-secret-123\n")
    monkeypatch.setenv("TUNEBRIDGE_DATA_DIR", str(tmp_path / "state"))
    settings = Settings()
    assert settings.poll_interval_s == 3.5
    assert settings.data_dir == tmp_path / "state"
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-dotenv-secret-123"
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'state' / 'tunebridge.db'}"


def test_secrets_do_not_appear_in_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEBRIDGE_SLACK_BOT_TOKEN", "xoxb-very-secret-token")
    monkeypatch.setenv("TUNEBRIDGE_OPENAI_API_KEY", "sk-very-secret-key")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    for text in (repr(settings), str(settings), str(settings.model_dump())):
        assert "xoxb-very-secret-token" not in text
        assert "sk-very-secret-key" not in text


def test_log_lines_are_json_and_scrub_secrets() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(secrets=["sk-leaky-secret-999"]))
    logger = logging.getLogger("tunebridge.test")
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning("provider said sk-leaky-secret-999 is bad", extra={"job_id": "job_1"})
    line = stream.getvalue()
    assert "sk-leaky-secret-999" not in line
    assert '"job_id":"job_1"' in line
    assert '"event":"provider said ********** is bad"' in line


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEBRIDGE_POLL_INTERVAL_S", "-1")
    with pytest.raises(ValueError, match="poll_interval_s"):
        Settings(_env_file=None)  # type: ignore[call-arg]
