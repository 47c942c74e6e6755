"""Job-time checks of the data against the chosen backend and model, and the estimate.

Upload-time validation knows only the file; here we know where it will train: formats the
backend accepts, the model's context and tokenizer, the epochs. The estimate (money for OpenAI,
device time for local) decides whether the job needs approval first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunebridge import estimates, tokens
from tunebridge.errors import InvalidInput, Problem
from tunebridge.validation import ValidationReport, find_overlap, validate_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobPolicy:
    """The settings that job creation obeys (built from Settings by the caller)."""

    models_dir: Path
    local_device: str = "cpu"
    max_cost_usd: float | None = None
    max_gpu_hours: float | None = None
    max_reported: int = 100
    validation_workers: int = 1


@dataclass(frozen=True)
class Assessment:
    report: ValidationReport
    estimate: dict[str, Any] | None
    warnings: list[Problem]
    approval_reasons: tuple[str, ...]


def _counter(backend: str, base_model: str, models_dir: Path) -> tokens.TokenCounter | None:
    """A local model's own tokenizer; None for OpenAI, whose tiktoken counter the validation
    builds from the model name (so worker processes can build it too)."""
    if backend == "openai":
        return None
    try:
        from backends.local.catalogue import ModelCatalogue

        resolved = ModelCatalogue(models_dir).resolve(base_model)
    except Exception:  # an unknown model: the trainer reports it; no token stats here
        return None
    if resolved.source == "hub":
        return None
    tokenizer = Path(resolved.location) / "tokenizer.json"
    if not tokenizer.exists():
        return None
    return tokens.local_counter(tokens.tokenizer_json_counter(tokenizer))


def assess(*, policy: JobPolicy, backend: str, base_model: str, epochs: int,
           training: Path, validation: Path | None) -> Assessment:
    counter = _counter(backend, base_model, policy.models_dir)
    context = tokens.context_for_model(base_model) if backend == "openai" else None
    report = validate_file(training, backend=backend, model=base_model, counter=counter,
                           context=context, max_reported=policy.max_reported,
                           workers=policy.validation_workers)
    if not report.ok:
        raise InvalidInput(
            "dataset_not_usable",
            f"The training file cannot be used with {backend} / {base_model}: "
            f"{report.error_count} problem(s).",
            problems=[p for p in report.problems if p.severity == "error"])
    warnings: list[Problem] = []
    if validation is not None:
        overlap = find_overlap(training, validation).problem
        if overlap is not None:
            warnings.append(overlap)
    estimate, reasons = _estimate(policy, backend, base_model, epochs, report)
    return Assessment(report=report, estimate=estimate, warnings=warnings,
                      approval_reasons=reasons)


def _estimate(policy: JobPolicy, backend: str, base_model: str, epochs: int,
              report: ValidationReport) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
    if report.tokens is None or report.tokens.examples == 0:
        return None, ()
    try:
        estimate = estimates.estimate_job(
            backend=backend, model=base_model, tokens_per_epoch=report.tokens.billed_per_epoch,
            epochs=epochs, device=policy.local_device)
    except ValueError as exc:  # e.g. no throughput entry for the configured device
        log.warning("no estimate: %s", exc)
        return None, ()
    decision = estimates.exceeds_cap(estimate, estimates.Caps(
        max_cost_usd=policy.max_cost_usd, max_gpu_hours=policy.max_gpu_hours))
    body = estimate.as_dict()
    body["tokens"] = {"examples": report.tokens.examples, "total": report.tokens.total,
                      "billed_per_epoch": report.tokens.billed_per_epoch, "epochs": epochs}
    return body, decision.reasons
