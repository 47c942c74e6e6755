"""The loss chart: train and validation loss against step, best validation step marked.

Drawn for the completion summary: Slack uploads it into the job's thread, the console
notifier writes it to a file, and `GET /api/jobs/{id}/summary/chart.png` serves it.

Uses matplotlib's object API (`Figure`, no pyplot): no global state, so charts can be drawn
from the notifier's worker thread while other threads run. matplotlib is imported on first use
so that it costs nothing at start-up.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from storage.tables import MetricPoint


def loss_chart(points: Sequence[MetricPoint], *, title: str) -> bytes | None:
    """PNG bytes, or None when there is nothing to plot."""
    train = [(p.step, p.train_loss) for p in points if p.train_loss is not None]
    evals = [(p.step, p.eval_loss) for p in points if p.eval_loss is not None]
    if not train and not evals:
        return None
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=100)
    axes = figure.subplots()
    if train:
        axes.plot(*zip(*train, strict=True), label="train loss", linewidth=1.2)
    if evals:
        axes.plot(*zip(*evals, strict=True), label="validation loss", marker="o", markersize=3)
        best_step, best_loss = min(evals, key=lambda pair: (pair[1], pair[0]))
        axes.axvline(best_step, color="tab:green", linestyle="--", linewidth=1)
        axes.scatter([best_step], [best_loss], color="tab:green", zorder=3,
                     label=f"best val {best_loss:.4f} @ step {best_step}")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
