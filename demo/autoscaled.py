"""`python -m demo --autoscale`: a storm from zero copies, up, down to zero, and a second
wave that meets a cold start again.

Two waves of clients (each a `ClientProfile`: ramp up, hold, ramp down) fire keys whose
duplicates are spread over time, through the `Autoscaler`, so one key's duplicates reach
copies that are new, old and draining.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from devserver.stack import LocalStack
from loadgen.storm import ClientProfile, LoadShape, Result, Run, fire_profile, new_run_names

from .autoscaler import Autoscaler, Knobs
from .census import Census, from_postgres
from .events import EventsOut

# A copy counts as new for this long after it became ready.
NEW_COPY_SECONDS = 2.0
# Plenty of keys: a wave ends when its time is up, and only the keys sent are counted.
KEYS_PER_WAVE = 5_000  # ~1,000 are sent at the rates seen here; planning 10x that takes seconds
# The late half of a key's duplicates trickle out over this many keys' worth of requests:
# about 2-3 s at the rates seen here, longer than a drain and a cold start apart.
SPREAD_KEYS = 120


@dataclass(frozen=True)
class Waves:
    peak_clients: int = 16
    repeats: int = 8
    retry_share: float = 0.0
    mismatch_share: float = 0.0
    seed: int | None = None

    def first(self) -> ClientProfile:
        """Up to the peak (copies added), a dip to a third (copies drained while still
        busy), back to the peak (new copies while the drained one finishes), then two
        clients for a while (drained one by one, still busy) and nothing (down to zero)."""
        peak = self.peak_clients
        third = max(1, peak * 3 // 8)
        return ClientProfile(((0.0, 1), (0.5, 1), (3.0, peak), (6.0, peak), (6.5, third), (9.0, third),
                              (9.5, peak), (12.0, peak), (13.0, 2), (18.0, 2), (18.0, 0)))

    def second(self) -> ClientProfile:
        """After the scale to zero: a smaller burst that waits for a cold copy first."""
        half = max(1, self.peak_clients // 2)
        return ClientProfile(((0.0, half), (4.0, half), (5.0, 2), (9.0, 2), (9.0, 0)))


@dataclass(frozen=True)
class AutoscaledRun:
    run: Run
    scaler: Autoscaler
    wave_started_at: tuple[float, float]
    reached_zero: bool
    census: Census
    events: dict[str, Any]  # EventsOut.figures: every order's event at the sink


def run_autoscaled(
    waves: Waves, knobs: Knobs, *, database_url: str | None, redis_url: str | None,
    on_answer: Any = lambda: None, say: Any = lambda message: None,
) -> AutoscaledRun:
    """Start the storage, fire both waves through the autoscaler, count the orders in
    PostgreSQL, stop everything."""
    profile, key_names = new_run_names(2 * KEYS_PER_WAVE)
    shape = LoadShape(keys=KEYS_PER_WAVE, repeats=waves.repeats, clients=waves.peak_clients,
                      retry_share=waves.retry_share, mismatch_share=waves.mismatch_share, seed=waves.seed)
    with EventsOut() as events, LocalStack(database_url=database_url, redis_url=redis_url,
                                           env=events.copy_env) as stack:
        scaler = Autoscaler(stack, knobs)
        started = time.perf_counter()
        scaler.start(started)
        try:
            say("wave 1: from zero copies, up, and down; the event sink goes away for a while")
            events.schedule_outage(started)
            results, first_at = fire_profile(shape, scaler, waves.first(), profile=profile, key_names=key_names,
                                   on_answer=on_answer, clock_started=started, spread_keys=SPREAD_KEYS)
            say("waiting for the scale to zero")
            zero = scaler.wait_for_copies(0, timeout_seconds=knobs.scale_down_delay_seconds * (knobs.max_scale + 2) + 30)
            say("wave 2: a cold start again")
            more, second_at = fire_profile(shape, scaler, waves.second(), profile=profile, key_names=key_names,
                                           on_answer=on_answer, clock_started=started, key_offset=KEYS_PER_WAVE,
                                           spread_keys=SPREAD_KEYS)
            results += more
            zero = scaler.wait_for_copies(0, timeout_seconds=knobs.scale_down_delay_seconds * (knobs.max_scale + 2) + 30) and zero
        finally:
            scaler.stop()
        run = Run(profile, key_names, results, time.perf_counter() - started)
        say("the last order events: a ping wakes a copy if any are pending")
        events.publish_the_rest(stack, lambda: _pending_events(stack))
        with stack.connect() as connection:
            counted = from_postgres(connection.native, profile, key_names)
        published = events.figures({order.order_id for order in counted.orders})
        return AutoscaledRun(run, scaler, (first_at, second_at), zero, counted, published)


def _pending_events(stack: LocalStack) -> int:
    with stack.connect() as connection:
        return int(connection.native.run("SELECT count(*) FROM outbox")[0][0])


def scaling_figures(autoscaled: AutoscaledRun) -> dict[str, Any]:
    """What the copies did: peak, cold starts, drains, held requests, and how each key's
    duplicates met copies in each stage of their life."""
    scaler = autoscaled.scaler
    copies = {c.name: c for c in scaler.copies}
    stages_per_key: dict[int, set[str]] = {}
    copies_per_key: dict[int, set[str]] = {}
    for result in autoscaled.run.results:
        if result.copy is None:
            continue
        stages_per_key.setdefault(result.planned.key_index, set()).add(_stage(result, copies[result.copy]))
        copies_per_key.setdefault(result.planned.key_index, set()).add(result.copy)
    drains = [c for c in scaler.copies if c.drained_at is not None]
    held = scaler.held_seconds
    return {
        "peakCopies": max((s.starting + s.ready for s in scaler.samples), default=0),
        "peakReadyCopies": max((s.ready for s in scaler.samples), default=0),
        "coldStarts": len(scaler.copies),
        "copyStartedAtSeconds": [round(c.started_at, 2) for c in scaler.copies],
        "coldStartMs": [round((c.ready_at - c.started_at) * 1000) for c in scaler.copies if c.ready_at is not None],
        "drains": len(drains),
        "drainsWithRequestsInFlight": sum(1 for c in drains if c.in_flight_at_drain),
        "copyExitStatuses": dict(Counter(str(c.copy.process.returncode) for c in drains
                                         if c.exited_at is not None and c.copy.process is not None)),
        "scaledToZero": autoscaled.reached_zero,
        "heldRequests": len(held),
        "longestHoldMs": round(max(held) * 1000) if held else None,
        "keysOverSeveralCopies": sum(1 for names in copies_per_key.values() if len(names) > 1),
        "keysMeetingStages": dict(sorted(Counter(
            "+".join(sorted(stages)) for stages in stages_per_key.values()).items())),
        "keysMeetingNewOldAndDraining": sum(1 for s in stages_per_key.values() if {"new", "old", "draining"} <= s),
        "keysMeetingADrainingCopy": sum(1 for s in stages_per_key.values() if "draining" in s),
        "outcomesReportedByCopies": dict(sum((counts for _, _, counts in scaler.outcome_samples), Counter())),
        "knobs": {"target": scaler.knobs.target, "scaleDownDelaySeconds": scaler.knobs.scale_down_delay_seconds,
                  "minScale": scaler.knobs.min_scale, "maxScale": scaler.knobs.max_scale},
        "waveStartedAtSeconds": [round(t, 2) for t in autoscaled.wave_started_at],
        **autoscaled.events,
    }


def _stage(result: Result, copy: Any) -> str:
    """The copy's stage when this request was answered: draining (SIGTERM came while it
    was in flight), new (ready less than NEW_COPY_SECONDS before it was sent), or old."""
    if copy.drained_at is not None and copy.drained_at <= result.answered_at:
        return "draining"
    if copy.ready_at is not None and result.sent_at - copy.ready_at < NEW_COPY_SECONDS:
        return "new"
    return "old"
