"""A copy's /metrics, read one way for the tests, the bench and the demo: fetched by
`scrape`, parsed by prometheus_client's own parser (the format's reference reader)."""

from __future__ import annotations

from collections import Counter

import requests
from prometheus_client.parser import text_string_to_metric_families

OUTCOMES = "orders_idempotency_outcomes_total"  # one series per outcome (function/labels.py)

Labels = frozenset[tuple[str, str]]


def scrape(url: str, timeout_seconds: float = 10) -> str:
    """The exposition text of the server at `url`; empty where it exposes none (the
    bench's bare floors answer every path with an order, the replay floor a 404)."""
    response = requests.get(url + "/metrics", timeout=timeout_seconds)
    if response.status_code == 404:
        return ""
    response.raise_for_status()
    if not response.headers.get("Content-Type", "").startswith("text/plain"):
        return ""
    return response.text


def samples(text: str) -> dict[tuple[str, Labels], float]:
    """Every sample: (name as exposed, e.g. `..._total` or `..._bucket`; its labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }


def sample(text: str, name: str, labels: str = "") -> float:
    """One sample, its labels as printed (`{kind="timeout"}`, or none); 0 if absent."""
    return samples(text).get((name, _parsed_labels(labels)), 0.0)


def outcome_counts(text: str) -> Counter[str]:
    """How many requests ended in each outcome (the copy's counters, since it started)."""
    counts: Counter[str] = Counter()
    for (name, labels), value in samples(text).items():
        if name == OUTCOMES:
            counts[dict(labels)["outcome"]] = int(value)
    return counts


def _parsed_labels(printed: str) -> Labels:
    if not printed:
        return frozenset()
    (family,) = text_string_to_metric_families(f"x{printed} 0\n")
    return frozenset(family.samples[0].labels.items())
