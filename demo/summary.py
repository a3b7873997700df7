"""The figures a run ends with: what was sent, what came back, and what exists.

Every answer is checked against the census, not trusted on its own: a 201 "carries the
original order" only if the order it names is the one order stored for its key.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from loadgen.stats import latency_ms
from loadgen.storm import ALTERED_QUANTITY, ORIGINAL_QUANTITY, Result, Run

from .census import Census

OUTCOMES = ("created", "replayed", "409", "422", "error")


def summarise(run: Run, census: Census, targets: list[str]) -> dict[str, Any]:
    by_key = census.by_key()
    original = {key: orders[0] for key, orders in by_key.items() if key is not None and len(orders) == 1}
    duplicates = sum(len(orders) - 1 for key, orders in by_key.items() if key is not None)
    duplicates += len(by_key.get(None, []))  # orders no key of the run asked for
    outcomes = Counter(result.outcome for result in run.results)
    carrying_original = sum(
        1 for r in run.results
        if r.final.status == 201 and r.planned.key_index in original
        and r.order_id == original[r.planned.key_index].order_id
    )
    answered = [r for r in run.results if r.final.status is not None]
    sent_keys = {r.planned.key_index for r in run.results}  # an autoscaled wave ends on time, not on keys
    return {
        "profile": run.profile,
        "census": census.source,
        "requests": len(run.results),
        "attempts": sum(len(r.attempts) for r in run.results),
        "distinctKeys": len(sent_keys),
        "ordersAfterwards": len(census.orders),
        "duplicatesCreated": duplicates,
        "keysWithoutOrder": sum(1 for k in sent_keys if k not in by_key),
        "answersCarryingOriginal": carrying_original,
        "answersCarryingAnotherOrder": outcomes["created"] + outcomes["replayed"] - carrying_original,
        "outcomes": {name: outcomes[name] for name in OUTCOMES},
        "unexpected422": sum(1 for r in run.results if r.outcome == "422" and not _differs(r, original)),
        "clientTimeoutsRetried": sum(
            1 for r in run.results for a in r.attempts[:-1] if a.error == "client timeout"
        ),
        "errors": dict(Counter(_error_kind(r) for r in run.results if r.outcome == "error")),
        "seconds": round(run.seconds, 3),
        "requestsPerSecond": round(len(run.results) / run.seconds, 1) if run.seconds else None,
        "latencyMs": latency_ms([r.final.seconds for r in answered]),
        "latencyMsByOutcome": {
            name: latency_ms([r.final.seconds for r in answered if r.outcome == name])
            for name in OUTCOMES if outcomes[name]
        },
        "requestsPerTarget": {t: sum(1 for r in run.results if (r.copy or r.planned.target) == t) for t in targets},
        "requestsPerServedBy": dict(Counter(r.served_by or "(no answer)" for r in run.results)),
    }


def guarantees_held(figures: dict[str, Any]) -> bool:
    """One order per key, and no answer naming any other: what the demo exists to show;
    with events published, also one event id per order and none missing."""
    events_held = figures.get("ordersWithoutEvent", 0) == 0 and figures.get("eventsForNoOrder", 0) == 0
    return figures["duplicatesCreated"] == 0 and figures["answersCarryingAnotherOrder"] == 0 and events_held


def _differs(result: Result, original: dict[int, Any]) -> bool:
    """Did this request's body differ from the order stored for its key (a 422 it earned)?"""
    stored = original.get(result.planned.key_index)
    if stored is None:
        return True
    sent = ALTERED_QUANTITY if result.planned.altered else ORIGINAL_QUANTITY
    return bool(stored.product_quantity != sent)


def _error_kind(result: Result) -> str:
    final = result.final
    return final.error or f"HTTP {final.status}"
