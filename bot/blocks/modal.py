"""The `/finetune start` form and the job details view.

The hyperparameter inputs are generated from the seed policy (`hyperparameters.knobs_for`), so
the form shows exactly the defaults and ranges the service lints against; changing the backend
or method re-renders it (views.update) with that combination's knobs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from bot.blocks.text import MAX_MODAL_BLOCKS, clip, context, escape, fields, plain, section
from bot.commands import Start, number
from storage.tables import Job, JobEvent
from tunebridge.hyperparameters import Knob, knobs_for

START_CALLBACK = "finetune_start"
BACKEND_ACTION = "pick_backend"
METHOD_ACTION = "pick_method"
LABELS = {"learning_rate": "Learning rate", "n_epochs": "Epochs", "batch_size": "Batch size",
          "warmup_ratio": "Warmup ratio", "weight_decay": "Weight decay", "lora_r": "LoRA r",
          "lora_alpha": "LoRA alpha", "lora_dropout": "LoRA dropout", "beta": "DPO beta",
          "learning_rate_multiplier": "LR multiplier"}
PATIENCE = "early_stopping_patience"


def decimal_text(value: float) -> str:
    """Slack's number_input wants plain decimals ('0.0002'), not '2e-04'."""
    return format(Decimal(repr(value)).normalize(), "f")


def _option(value: str) -> dict[str, Any]:
    return {"text": plain(value, 75), "value": value}


def _select(block_id: str, label: str, action: str, choices: Sequence[str], chosen: str
            ) -> dict[str, Any]:
    return {"type": "input", "block_id": block_id, "label": plain(label), "dispatch_action": True,
            "element": {"type": "static_select", "action_id": action,
                        "options": [_option(c) for c in choices[:100]],
                        "initial_option": _option(chosen)}}


def _knob_input(knob: Knob) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "number_input", "action_id": "value",
                               "is_decimal_allowed": knob.kind is float,
                               "initial_value": decimal_text(knob.default)}
    if knob.hard_low is not None:
        element["min_value"] = decimal_text(knob.hard_low)
    if knob.hard_high is not None:
        element["max_value"] = decimal_text(knob.hard_high)
    hint = knob.advice
    if knob.low is not None and knob.high is not None:
        hint = f"Recommended {knob.low:g}–{knob.high:g}: {knob.advice}"
    return {"type": "input", "block_id": f"hp:{knob.name}", "element": element,
            "label": plain(LABELS.get(knob.name, knob.name)), "hint": plain(hint, 2000)}


def _text_input(block_id: str, label: str, *, initial: str | None = None, hint: str = "",
                optional: bool = True) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": "value"}
    if initial:
        element["initial_value"] = initial
    block = {"type": "input", "block_id": block_id, "optional": optional,
             "label": plain(label), "element": element}
    if hint:
        block["hint"] = plain(hint, 2000)
    return block


def start_modal(*, backends: Sequence[str], backend: str, method: str, base_model: str,
                metadata: str) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "input", "block_id": "dataset_file", "optional": True,
         "label": plain("Training data (JSONL)"),
         "element": {"type": "file_input", "action_id": "value", "filetypes": ["jsonl"],
                     "max_files": 1}},
        _text_input("dataset_ref", "…or a dataset id or URL",
                    hint="ds_… from an earlier upload, or a link on an allowed host"),
        _text_input("base_model", "Base model", initial=base_model, optional=False),
        _select("backend", "Backend", BACKEND_ACTION, backends, backend),
        _select("method", "Method", METHOD_ACTION, ("sft", "dpo"), method),
        *(_knob_input(knob) for knob in knobs_for(method, backend)),
    ]
    if backend != "openai":
        blocks.append({**_knob_input(Knob(PATIENCE, int, 0, None, None, 0, 1000, "")),
                       "optional": True, "label": plain("Early stopping patience"),
                       "hint": plain("Stop after N evaluations without a better val loss "
                                     "(0 = off); needs validation data.")})
    blocks.append(_text_input("validation", "Validation dataset id (optional)"))
    return {"type": "modal", "callback_id": START_CALLBACK, "title": plain("Start fine-tune", 24),
            "submit": plain("Start", 24), "close": plain("Cancel", 24),
            "private_metadata": metadata, "blocks": blocks[:MAX_MODAL_BLOCKS]}


def _value(values: dict[str, Any], block_id: str) -> Any:
    element: dict[str, Any] = next(iter(values.get(block_id, {}).values()), {})
    if "selected_option" in element:
        return (element["selected_option"] or {}).get("value")
    if element.get("type") == "file_input":
        return [f.get("id") for f in element.get("files") or []]
    return element.get("value")


def choices(values: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(backend, method, base model) as currently picked in the form."""
    return _value(values, "backend"), _value(values, "method"), _value(values, "base_model")


def parse_submission(values: dict[str, Any]) -> Start | dict[str, str]:
    """The form as a `Start` command, or Slack's `response_action=errors` map for the form."""
    files = _value(values, "dataset_file") or []
    ref = (_value(values, "dataset_ref") or "").strip()
    if bool(files) == bool(ref):
        return {"dataset_file": "Attach one JSONL file, or give a dataset id or URL (not both)."}
    hyper: dict[str, Any] = {}
    for block_id in values:
        raw = _value(values, block_id)
        if block_id.startswith("hp:") and raw not in (None, ""):
            hyper[block_id[3:]] = number(str(raw))
    if not hyper.get(PATIENCE):
        hyper.pop(PATIENCE, None)
    backend, method, model = choices(values)
    return Start(source=files[0] if files else ref, base_model=(model or "").strip() or None,
                 backend=backend, method=method,
                 validation=(_value(values, "validation") or "").strip() or None,
                 hyperparameters=hyper)


def details_modal(job: Job, events: Sequence[JobEvent]) -> dict[str, Any]:
    params = json.dumps(job.hyperparameters, indent=1, sort_keys=True)
    lines = [f"`{e.created_at:%H:%M:%S}` {escape(e.message)}" for e in events[-12:]]
    blocks = [
        fields([("Job", job.id), ("External id", escape(job.external_id or "—")),
                ("Training data", job.training_dataset_id),
                ("Validation data", job.validation_dataset_id or "—"),
                ("Created", f"{job.created_at:%Y-%m-%d %H:%M} UTC"),
                ("Finished", f"{job.finished_at:%Y-%m-%d %H:%M} UTC" if job.finished_at
                 else "—")]),
        section(clip(f"*Hyperparameters*\n```{escape(params)}```", 3000)),
        context(clip("\n".join(lines) or "No events yet.", 2000)),
    ]
    return {"type": "modal", "title": plain("Job details", 24), "close": plain("Close", 24),
            "blocks": blocks}
