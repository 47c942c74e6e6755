"""Training health: the seed's monitoring tables as pure detectors over a metric series.

Nothing here touches storage, the network or a clock; callers (poller, HTTP route, CLI, Slack)
build a `MetricSeries`, call `analyze`, and post each finding once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunebridge.health.analyze import analyze
from tunebridge.health.autostop import AutoStopPolicy, StopDecision, decide_stop
from tunebridge.health.findings import FIXES, Finding, FindingKind, HealthReport, Severity
from tunebridge.health.loaders import MetricsFormat, detect_format, load_series, parse_series
from tunebridge.health.schedule import LrSchedule, ScheduleType
from tunebridge.health.series import MetricSeries, Objective, SeriesPoint

__all__ = [
    "FIXES",
    "AutoStopPolicy",
    "Finding",
    "FindingKind",
    "HealthReport",
    "LrSchedule",
    "MetricSeries",
    "MetricsFormat",
    "Objective",
    "ScheduleType",
    "SeriesPoint",
    "Severity",
    "StopDecision",
    "analyze",
    "analyze_file",
    "analyze_text",
    "decide_stop",
    "detect_format",
    "load_series",
    "parse_series",
]


def analyze_file(path: str | Path, *, schedule: LrSchedule | None = None) -> dict[str, Any]:
    """`tunebridge health FILE --json`: {"findings": [...], "best_eval_step": int | None}."""
    return analyze(load_series(path), schedule=schedule).as_dict()


def analyze_text(text: str, *, schedule: LrSchedule | None = None) -> dict[str, Any]:
    """The same for a file's contents (`POST /api/health` with the file as body)."""
    return analyze(parse_series(text), schedule=schedule).as_dict()
