"""A measurement reduced to the figures the report shows, and ratios between two of them."""

from __future__ import annotations

from collections import Counter
from typing import Any

from loadgen.closed_loop import Measurement
from loadgen.stats import PERCENTILES, percentile


def figures(measurement: Measurement) -> dict[str, Any]:
    """Throughput and latency percentiles (ms), with what the answers were."""
    latencies = measurement.latencies
    answered = len(measurement.answers)
    return {
        "connections": measurement.connections,
        "requests": answered,
        "seconds": round(measurement.wall_seconds, 3),
        "throughput": round(measurement.throughput, 1),
        **{name: _ms(percentile(latencies, share)) for name, share in PERCENTILES},
        "statuses": {str(status): count for status, count in sorted(Counter(
            answer.status for answer in measurement.answers).items())},
        "replayed": sum(1 for answer in measurement.answers if answer.replayed),
        "errors": len(measurement.errors),
        "generatorCpuMicrosecondsPerRequest": (
            round(measurement.generator_cpu_seconds / answered * 1e6, 1) if answered else None
        ),
    }


def latency_figures(seconds: list[float]) -> dict[str, float | None]:
    return {name: _ms(percentile(seconds, share)) for name, share in PERCENTILES}


def ratio(part: float | None, whole: float | None) -> float | None:
    if part is None or not whole:
        return None
    return round(part / whole, 3)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
