"""The targets the figures are reported against (issues 8 and 16), each judged at every
concurrency measured, as ratios to the ASGI floor of the same run: one copy, one worker.

Figures, not tests: a missed target is reported, never a failure.
"""

from __future__ import annotations

from typing import Any

JUDGED_AGAINST = "floorAsgi"
REPLAY_THROUGHPUT_MIN = 0.25  # x the ASGI floor's req/s
REPLAY_P99_MAX = 3.0  # x the ASGI floor's p99
CREATE_THROUGHPUT_MIN = 0.10  # x the ASGI floor's req/s
STORM_ORIGINAL_SHARE_MIN = 0.99
# Group commit (issue 16): PostgreSQL's own CPU per created order, all its processes...
POSTGRES_CPU_PER_ORDER_MAX_US = 200
# ...and no latency paid for it when nothing queues: create p50 with batching on over off.
LONE_CREATE_P50_MAX = 1.10
# Issue 24: the function's own share of a replay, cold start, and tracing's sampled-out cost.
REPLAY_OVER_REPLAY_FLOOR_MIN = 0.8  # x the replay-shaped floor's req/s
COLD_START_MAX = 1.3  # x the ASGI floor's process start to first 201
SAMPLED_OUT_CPU_MAX = 1.05  # copy CPU per replay, 5 % sampler over tracing off
EVENTS_OUT_CPU_MAX = 1.3  # copy CPU per create, K_SINK set over unset


def judge(results: dict[str, Any]) -> list[dict[str, Any]]:
    ratios, storm = results["ratios"], results["scenarios"]["storm"]
    rows = []
    for connections in ratios["replay"]:
        shown = storm[connections]["storm"]
        # The replay targets are the Redis path's (one round trip); the PostgreSQL path
        # (after a flush) does a create's work and is reported in the scenarios, not judged.
        for name, label in (("replay", "replay (Redis path)"),):
            ratio = ratios[name][connections]
            rows += [
                _row(f"{label} throughput", connections, ratio["throughput"],
                     f">= {REPLAY_THROUGHPUT_MIN} x ASGI floor", _at_least(ratio["throughput"], REPLAY_THROUGHPUT_MIN)),
                _row(f"{label} p99", connections, ratio["p99"],
                     f"<= {REPLAY_P99_MAX} x ASGI floor p99", _at_most(ratio["p99"], REPLAY_P99_MAX)),
            ]
        create = ratios["create"][connections]
        rows += [
            _row("create throughput", connections, create["throughput"],
                 f">= {CREATE_THROUGHPUT_MIN} x ASGI floor", _at_least(create["throughput"], CREATE_THROUGHPUT_MIN)),
            _row("storm duplicates created", connections, shown["duplicatesCreated"], "0",
                 shown["duplicatesCreated"] == 0),
            _row("storm answers with the original order", connections, shown["originalShare"],
                 f">= {STORM_ORIGINAL_SHARE_MIN}", _at_least(shown["originalShare"], STORM_ORIGINAL_SHARE_MIN)),
        ]
        over_floor = ratios["replay"][connections].get("overReplayFloor")
        if over_floor is not None:
            rows.append(_row("replay (Redis path) throughput", connections, over_floor["throughput"],
                             f">= {REPLAY_OVER_REPLAY_FLOOR_MIN} x replay-shaped floor",
                             _at_least(over_floor["throughput"], REPLAY_OVER_REPLAY_FLOOR_MIN)))
        created = results["scenarios"]["create"][connections]
        rows.append(_row("PostgreSQL CPU per created order (µs)", connections,
                         created.get("postgresCpuMicrosecondsPerOrder"), f"<= {POSTGRES_CPU_PER_ORDER_MAX_US}",
                         _at_most(created.get("postgresCpuMicrosecondsPerOrder"), POSTGRES_CPU_PER_ORDER_MAX_US)))
        unbatched = results["scenarios"].get("createUnbatched", {}).get(connections)
        if connections == "1" and unbatched:
            p50 = round(created["p50"] / unbatched["p50"], 3) if unbatched["p50"] else None
            rows.append(_row("create p50, group commit on / off", connections, p50,
                             f"<= {LONE_CREATE_P50_MAX}", _at_most(p50, LONE_CREATE_P50_MAX)))
    return rows + _once(results)


def _once(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets judged once per run (not per concurrency)."""
    rows = []
    cold, floor = results.get("coldStart"), results.get("coldStartFloor")
    if cold and floor and floor["toFirst201"]["p50"]:
        figure = round(cold["toFirst201"]["p50"] / floor["toFirst201"]["p50"], 3)
        rows.append(_row("cold start to first 201, median", None, figure, f"<= {COLD_START_MAX} x ASGI floor's",
                         _at_most(figure, COLD_START_MAX)))
    points = (results.get("tracing") or {}).get("points", {})
    off, sampled = points.get("off", {}).get("copyCpuMicrosecondsPerReplay"), points.get("sampled5", {}).get(
        "copyCpuMicrosecondsPerReplay")
    if off and sampled:
        figure = round(sampled / off, 3)
        rows.append(_row("copy CPU per replay, tracing 5 % sampled", "16", figure, f"<= {SAMPLED_OUT_CPU_MAX} x off",
                         _at_most(figure, SAMPLED_OUT_CPU_MAX)))
    points = (results.get("publishing") or {}).get("points", {})
    off, on = (points.get(name, {}).get("copyCpuMicrosecondsPerCreate") for name in ("off", "on"))
    if off and on:
        figure = round(on / off, 3)
        rows.append(_row("copy CPU per create, K_SINK set", "16", figure, f"<= {EVENTS_OUT_CPU_MAX} x unset",
                         _at_most(figure, EVENTS_OUT_CPU_MAX)))
    return rows


def _row(target: str, connections: str | None, figure: Any, wanted: str, met: bool) -> dict[str, Any]:
    return {"target": target, "connections": connections, "figure": figure, "wanted": wanted, "met": bool(met)}


def _at_least(value: float | None, minimum: float) -> bool:
    return value is not None and value >= minimum


def _at_most(value: float | None, maximum: float) -> bool:
    return value is not None and value <= maximum
