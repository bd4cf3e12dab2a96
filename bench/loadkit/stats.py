"""The small statistics of the load report: percentiles, a least-squares slope per minute,
rounding that keeps None."""
from __future__ import annotations

import math


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks: PostgreSQL's percentile_cont."""
    values = sorted(values)
    if not values:
        return None
    position = (len(values) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return values[low] + (values[high] - values[low]) * (position - low)


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return None
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if not spread:
        return None
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)
