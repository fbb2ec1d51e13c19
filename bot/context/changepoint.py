"""When did a signal change? One change point by mean shift. Pure.

The split that best separates the series into two flat segments (largest between-segment
difference relative to the noise within them) is reported only when it is clear: the means
differ by more than three times the pooled standard deviation and by at least 20 % of the
larger one. Enough for "errors rose 40 s after revision 8 became ready"; not a forecaster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from bot.context.model import ChangePoint

MIN_SEGMENT = 3
MIN_RELATIVE_SHIFT = 0.2
MIN_SIGMAS = 3.0


def change_point(points: Sequence[tuple[datetime, float]]) -> ChangePoint | None:
    values = [v for _, v in points if math.isfinite(v)]
    if len(values) < 2 * MIN_SEGMENT or len(values) != len(points):
        return None
    n = len(values)
    prefix, prefix_sq = [0.0], [0.0]
    for v in values:
        prefix.append(prefix[-1] + v)
        prefix_sq.append(prefix_sq[-1] + v * v)
    best: tuple[float, int, float, float, float] | None = None
    for k in range(MIN_SEGMENT, n - MIN_SEGMENT + 1):
        left_n, right_n = k, n - k
        left_mean = prefix[k] / left_n
        right_mean = (prefix[n] - prefix[k]) / right_n
        left_var = max(0.0, prefix_sq[k] / left_n - left_mean ** 2)
        right_var = max(0.0, (prefix_sq[n] - prefix_sq[k]) / right_n - right_mean ** 2)
        pooled = math.sqrt((left_var * left_n + right_var * right_n) / n)
        shift = abs(right_mean - left_mean)
        score = shift / (pooled + 1e-12 * (1 + abs(left_mean) + abs(right_mean)))
        if best is None or score > best[0]:
            best = (score, k, left_mean, right_mean, pooled)
    if best is None:
        return None
    _score, k, before, after, pooled = best
    shift = abs(after - before)
    scale = max(abs(before), abs(after))
    if shift <= MIN_SIGMAS * pooled or scale == 0 or shift < MIN_RELATIVE_SHIFT * scale:
        return None
    return ChangePoint(at=points[k][0], before=before, after=after)
