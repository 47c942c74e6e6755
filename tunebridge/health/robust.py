"""Small robust statistics for noisy training logs (medians, not means: one bad batch must not
move a baseline), plus a sliding sorted window so per-log checks stay O(n log n) on long runs."""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Sequence


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def step_noise(values: Sequence[float]) -> float:
    """Typical log-to-log change: the median absolute difference of neighbours."""
    diffs = [abs(b - a) for a, b in zip(values, values[1:], strict=False)]
    return median(diffs) if diffs else 0.0


def zigzag(values: Sequence[float]) -> list[float]:
    """|value - 3-point running median| for each inner point (index j-1 for point j)."""
    return [abs(values[j] - sorted(values[j - 1:j + 2])[1]) for j in range(1, len(values) - 1)]


def roughness(values: Sequence[float]) -> float:
    """Typical zig-zag around a 3-point running median.

    Zero for any monotone stretch, large when values jump up and down, so a steady rise reads
    as signal and a see-saw reads as noise (plain neighbour differences cannot tell them apart).
    """
    devs = zigzag(values)
    return median(devs) if devs else 0.0


def quantile(values: Sequence[float], share: float) -> float:
    """The value below which `share` of `values` lie (nearest rank; 0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class SlidingMedian:
    """Median of a window whose both ends only move forward (start never goes back)."""

    def __init__(self, values: Sequence[float]) -> None:
        self._values = values
        self._sorted: list[float] = []
        self._lo = 0
        self._hi = 0

    def window(self, lo: int, hi: int) -> float:
        """Median of values[lo:hi]; lo and hi must not decrease between calls."""
        while self._hi < hi:
            bisect.insort(self._sorted, self._values[self._hi])
            self._hi += 1
        while self._lo < lo:
            del self._sorted[bisect.bisect_left(self._sorted, self._values[self._lo])]
            self._lo += 1
        n = len(self._sorted)
        if n == 0:
            return float("nan")
        mid = n // 2
        return self._sorted[mid] if n % 2 else (self._sorted[mid - 1] + self._sorted[mid]) / 2


def geometric_checkpoints(n: int, start: int = 8, ratio: float = 1.25) -> list[int]:
    """Prefix lengths at which slow judgements (plateau) are made: fixed points that do not
    depend on how long the run will get, plus the current end."""
    points: list[int] = []
    size = float(start)
    while int(size) < n:
        if not points or int(size) != points[-1]:
            points.append(int(size))
        size *= ratio
    if n >= start:
        points.append(n)
    return points


def fmt(value: float) -> str:
    """Numbers for one-line messages: 4 significant digits, no exponent for ordinary losses."""
    return f"{value:.4g}"
