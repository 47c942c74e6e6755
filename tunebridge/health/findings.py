"""What the detectors say: findings with the seed's fixes, and the report that gathers them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class FindingKind(StrEnum):
    OVERFITTING = "overfitting"
    DIVERGING = "diverging"
    LOSS_SPIKES = "loss_spikes"
    PLATEAU = "plateau"
    GRAD_EXPLODING = "grad_exploding"
    GRAD_VANISHING = "grad_vanishing"
    LR_SCHEDULE = "lr_schedule"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


# The seed's "Fixes for Overfitting" and "Preventing Catastrophic Forgetting", verbatim in
# spirit, so a finding tells people what to change next time and not only what went wrong.
FORGETTING_GUARD = [
    "Mix ~20% general instruction data into the training set to guard against forgetting",
    "Regularize: weight decay up to 0.1, dropout 0.05-0.1",
]
FIXES: dict[FindingKind, list[str]] = {
    FindingKind.OVERFITTING: [
        "Reduce epochs (try 1-2 instead of 3+)",
        "Add dropout (0.05-0.1)",
        "Reduce the learning rate",
        "Add more training data",
        "Use early stopping on validation loss",
        *FORGETTING_GUARD[:1],
    ],
    FindingKind.DIVERGING: [
        "Lower the learning rate",
        "Enable gradient clipping (max_grad_norm 1.0)",
        "Add or lengthen warm-up (warmup ratio 0.03-0.1)",
    ],
    FindingKind.LOSS_SPIKES: [
        "Lower the learning rate",
        "Enable gradient clipping (max_grad_norm 1.0)",
        "Check the data around the spike steps for malformed or outlier examples",
    ],
    FindingKind.PLATEAU: [
        "Raise the learning rate (SFT range 1e-5 to 5e-4)",
        "Train for more epochs",
        "Check the data: labels, prompt masking and formatting",
    ],
    FindingKind.GRAD_EXPLODING: [
        "Lower the learning rate",
        "Enable gradient clipping (max_grad_norm 1.0)",
        "Add or lengthen warm-up (warmup ratio 0.03-0.1)",
    ],
    FindingKind.GRAD_VANISHING: [
        "Raise the learning rate",
        "Check the data: labels may be masked out or the loss may be constant",
    ],
    FindingKind.LR_SCHEDULE: [
        "Check the scheduler settings (type, warm-up, total steps) against the job's config",
        "Check that resuming from a checkpoint restored the scheduler state",
    ],
}


@dataclass(frozen=True)
class Finding:
    """One problem, certain from `step` on. `cause` refines the kind for auto-stop policies
    (a NaN loss and a slow upward trend are both "diverging" but warrant different urgency)."""

    kind: FindingKind
    step: int
    severity: Severity
    message: str
    fixes: list[str] = field(default_factory=list)
    cause: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Exactly the `--json` shape; `cause` stays internal."""
        return {
            "kind": str(self.kind),
            "step": self.step,
            "severity": str(self.severity),
            "message": self.message,
            "fixes": list(self.fixes),
        }


@dataclass(frozen=True)
class HealthReport:
    """Findings ordered by the step they became certain; the best eval is the checkpoint to
    keep. `evals_since_best` counts evaluations after the best one (for "overfitting for N
    evals" auto-stop)."""

    findings: list[Finding]
    best_eval_step: int | None = None
    best_eval_epoch: float | None = None
    best_eval_loss: float | None = None
    evals_since_best: int = 0

    def has(self, kind: FindingKind) -> bool:
        return any(f.kind == kind for f in self.findings)

    def get(self, kind: FindingKind) -> Finding | None:
        return next((f for f in self.findings if f.kind == kind), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "findings": [f.as_dict() for f in self.findings],
            "best_eval_step": self.best_eval_step,
        }


def make_finding(kind: FindingKind, step: int, severity: Severity, message: str,
                 cause: str = "") -> Finding:
    """A finding with the seed's fixes for its kind."""
    return Finding(kind, step, severity, message, list(FIXES[kind]), cause)
