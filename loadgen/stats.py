"""Percentiles as the demo and the bench report them."""

from __future__ import annotations

import math

PERCENTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (share 0.99 = p99): a value that was really measured."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def latency_ms(seconds: list[float], digits: int = 2) -> dict[str, float | None]:
    """p50/p95/p99 of durations in seconds, in milliseconds."""
    figures = {}
    for name, share in PERCENTILES:
        value = percentile(seconds, share)
        figures[name] = None if value is None else round(value * 1000, digits)
    return figures
