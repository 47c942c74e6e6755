"""Auto-stop: given a health report and a job's policy, should the run be stopped, and why.

Off unless a policy says so (a job option or a server default). The decision names the
checkpoint to keep — the best evaluation — so a graceful local stop can save the adapter
there and an OpenAI cancel can point at the right checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunebridge.health.findings import Finding, FindingKind, HealthReport


@dataclass(frozen=True)
class AutoStopPolicy:
    """Which findings stop a run. `overfitting_evals`: stop once overfitting is certain and at
    least this many evaluations came after the best one (None: never stop for overfitting)."""

    stop_on_nan: bool = True
    stop_on_divergence: bool = True
    stop_on_grad_exploding: bool = True
    overfitting_evals: int | None = 3


@dataclass(frozen=True)
class StopDecision:
    stop: bool
    reason: str = ""
    kind: FindingKind | None = None
    step: int | None = None
    keep_step: int | None = None


def decide_stop(report: HealthReport, policy: AutoStopPolicy | None) -> StopDecision:
    """The first finding (by step) that the policy stops for; no policy means never stop."""
    if policy is None:
        return StopDecision(stop=False)
    for finding in report.findings:
        why = _reason(finding, report, policy)
        if why:
            return StopDecision(True, why, finding.kind, finding.step, report.best_eval_step)
    return StopDecision(stop=False)


def _reason(finding: Finding, report: HealthReport, policy: AutoStopPolicy) -> str:
    if finding.kind is FindingKind.DIVERGING:
        if finding.cause == "nan" and policy.stop_on_nan:
            return f"loss became NaN/inf at step {finding.step}"
        if finding.cause != "nan" and policy.stop_on_divergence:
            return f"training diverged at step {finding.step}: {finding.message}"
    if finding.kind is FindingKind.GRAD_EXPLODING and policy.stop_on_grad_exploding:
        return f"gradients exploded at step {finding.step}: {finding.message}"
    evals = policy.overfitting_evals
    if (finding.kind is FindingKind.OVERFITTING and evals is not None
            and report.evals_since_best >= evals):
        return (f"validation loss has not improved for {report.evals_since_best} evaluations "
                f"since step {report.best_eval_step}: {finding.message}")
    return ""
