"""The pure parts: command parsing, Block Kit builders and their limits, progress."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.blocks.card import card, progress_bar
from bot.blocks.messages import error_message, reply
from bot.blocks.modal import parse_submission, start_modal
from bot.commands import (
    Approve,
    Cancel,
    Help,
    ListJobs,
    Start,
    Status,
    Subscribe,
    Unsubscribe,
    parse,
)
from storage.tables import Job, MetricPoint
from tests.slack.support import form_values
from tunebridge.errors import InvalidInput, Problem
from tunebridge.progress import JobSnapshot, measure

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("", Help()),
    ("start", Start()),
    ("start ds_abc epochs=2 lr=2e-4 model=m backend=local method=dpo r=8",
     Start(source="ds_abc", base_model="m", backend="local", method="dpo",
           hyperparameters={"n_epochs": 2, "learning_rate": 2e-4, "lora_r": 8})),
    ("start <https://h/x.jsonl|x.jsonl> val=ds_v", Start(source="https://h/x.jsonl",
                                                         validation="ds_v")),
    ("status", Status()), ("status job_1a", Status("job_1a")),
    ("list", ListJobs("mine")), ("list running", ListJobs("running")),
    ("cancel job_1a", Cancel("job_1a")), ("approve job_9z", Approve("job_9z")),
    ("subscribe", Subscribe()),
    ("unsubscribe openai", Unsubscribe("openai")),
])
def test_commands_parse(text: str, expected: object) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize("text", ["start a b", "start =3", "cancel", "cancel x y",
                                  "list forever", 'start "oops', "launch", "status a b",
                                  "approve", "approve ds_1"])
def test_bad_input_becomes_help_with_a_reason(text: str) -> None:
    command = parse(text)
    assert isinstance(command, Help) and command.error


def _job(**changes: object) -> Job:
    fields: dict[str, object] = {
        "id": "job_1", "backend": "local", "base_model": "m" * 300, "method": "sft",
        "status": "running", "training_dataset_id": "ds_1", "creator": "slack:U1",
        "hyperparameters": {"n_epochs": 2}, "created_at": NOW, "updated_at": NOW,
        "started_at": NOW - timedelta(minutes=10),
        "estimate": {"gpu_time": {"gpu_hours": 1.5, "device": "cpu"}}}
    fields.update(changes)
    return Job(**fields)


def _points() -> list[MetricPoint]:
    return [MetricPoint(job_id="job_1", step=s, epoch=s / 10, train_loss=2 / s,
                        eval_loss=(1 + (s - 5) ** 2 / 20) if s % 2 else None)
            for s in range(1, 11)]


def test_progress_eta_and_best_validation_point() -> None:
    progress = measure(_job(), _points(), [], NOW)
    assert progress.fraction == pytest.approx(0.5)  # epoch 1.0 of 2
    assert progress.eta_s == pytest.approx(600)
    assert (progress.best_eval_step, progress.best_eval_loss) == (5, 1.0)
    assert progress.train_loss == pytest.approx(0.2) and progress.first_train_loss == 2.0


def test_the_card_shows_progress_and_losses_within_block_kit_limits() -> None:
    snap = JobSnapshot(job=_job(), progress=measure(_job(), _points(), [], NOW),
                       points=_points())
    text, blocks = card(snap)
    body = json.dumps(blocks, ensure_ascii=False)
    assert progress_bar(0.5) in body and "step 10" in body and "epoch 1.00/2" in body
    assert "best 1.0000 @ step 5" in body and "10m 00s" in body and "1.50 GPU-h" in body
    assert "<@U1>" in body and '"confirm"' in body  # Cancel asks first
    assert all(len(f["text"]) <= 2000 for b in blocks for f in b.get("fields", []))
    assert len(blocks[0]["text"]["text"]) <= 150 and len(text) <= 300
    done = card(JobSnapshot(job=_job(status="succeeded"), progress=snap.progress, points=[]))
    assert "cancel_job" not in json.dumps(done[1])


def test_a_long_error_list_is_capped_and_counted() -> None:
    problems = [Problem("bad_json", f"Line {n} is not JSON <b>.", line=n) for n in range(1, 400)]
    problems += [Problem("missing_field", "No messages.", line=500, field="messages")] * 50
    text, blocks = error_message(InvalidInput("invalid_dataset", "x" * 5000, problems))
    assert len(blocks) <= 50 and len(text) <= 3000
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks if "text" in b)
    listed = blocks[1]["text"]["text"]
    assert listed.count("• line") == 10 and "&lt;b&gt;" in listed  # escaped, not markup
    assert "…and 439 more: 389 × `bad_json`, 50 × `missing_field`" in listed


def test_warnings_mention_the_creator_and_list_the_fixes() -> None:
    snap = JobSnapshot(job=_job(), progress=measure(_job(), [], [], NOW), points=[])
    _, blocks = reply("health", "Overfitting", {"fixes": ["Reduce epochs"],
                                                "mention_oncall": True}, snap, "S1")
    body = json.dumps(blocks)
    assert "<@U1> <!subteam^S1> Overfitting" in body and "Reduce epochs" in body


@pytest.mark.parametrize(("backend", "method", "knobs"), [
    ("local", "sft", {"learning_rate": "0.0002", "n_epochs": "3", "lora_r": "16"}),
    ("local", "dpo", {"learning_rate": "0.000005", "beta": "0.1", "n_epochs": "1"}),
    ("openai", "sft", {"learning_rate_multiplier": "1", "n_epochs": "3"}),
])
def test_the_form_is_prefilled_from_the_seed_and_parses_back(
        backend: str, method: str, knobs: dict[str, str]) -> None:
    view = start_modal(backends=["local", "openai"], backend=backend, method=method,
                       base_model="m", metadata="{}")
    initial = {b["block_id"][3:]: b["element"]["initial_value"] for b in view["blocks"]
               if b["block_id"].startswith("hp:") and "initial_value" in b["element"]}
    assert knobs.items() <= initial.items()
    assert ("hp:lora_r" in json.dumps(view)) is (backend == "local")
    parsed = parse_submission(form_values(view, dataset_ref="ds_1"))
    assert isinstance(parsed, Start) and parsed.source == "ds_1"
    assert (parsed.backend, parsed.method) == (backend, method)
    assert parsed.hyperparameters["n_epochs"] == int(knobs["n_epochs"])
    assert parse_submission(form_values(view)) == {
        "dataset_file": "Attach one JSONL file, or give a dataset id or URL (not both)."}


def test_the_manifest_declares_the_command_and_a_scope_for_every_method_we_call() -> None:
    from bot.listeners.commands import COMMAND

    yaml = pytest.importorskip("yaml")  # PyYAML arrives with the training stack's deps

    manifest = yaml.safe_load((Path(__file__).parents[2] / "bot" / "manifest.yaml").read_text())
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == [COMMAND]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    needed = {"chat.postMessage": "chat:write", "files.info": "files:read",
              "files.getUploadURLExternal": "files:write",
              "usergroups.users.list": "usergroups:read",
              "conversations.history": "channels:history", "/finetune": "commands"}
    assert set(needed.values()) <= scopes
