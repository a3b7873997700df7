"""The targets the figures are reported against, each judged at every concurrency measured.

Figures, not tests: a missed target is reported (and profiled), never a failure.
"""

from __future__ import annotations

from typing import Any

REPLAY_THROUGHPUT_MIN = 0.8  # x floor throughput
REPLAY_P99_MAX = 2.0  # x floor p99
CREATE_THROUGHPUT_MIN = 0.55  # x floor throughput
STORM_ORIGINAL_SHARE_MIN = 0.99
COLD_START_MAX_SECONDS = 1.5


def judge(results: dict[str, Any]) -> list[dict[str, Any]]:
    ratios, storm = results["ratios"], results["scenarios"]["storm"]
    rows = []
    for connections in ratios["replay"]:
        replay, create = ratios["replay"][connections], ratios["create"][connections]
        shown = storm[connections]["storm"]
        rows += [
            _row("replay (Redis path) throughput", connections, replay["throughput"],
                 f">= {REPLAY_THROUGHPUT_MIN} x floor", _at_least(replay["throughput"], REPLAY_THROUGHPUT_MIN)),
            _row("replay (Redis path) p99", connections, replay["p99"],
                 f"<= {REPLAY_P99_MAX} x floor p99", _at_most(replay["p99"], REPLAY_P99_MAX)),
            _row("create throughput", connections, create["throughput"],
                 f">= {CREATE_THROUGHPUT_MIN} x floor", _at_least(create["throughput"], CREATE_THROUGHPUT_MIN)),
            _row("storm duplicates created", connections, shown["duplicatesCreated"], "0",
                 shown["duplicatesCreated"] == 0),
            _row("storm answers with the original order", connections, shown["originalShare"],
                 f">= {STORM_ORIGINAL_SHARE_MIN}", _at_least(shown["originalShare"], STORM_ORIGINAL_SHARE_MIN)),
        ]
    cold = results["coldStart"]["toFirst201"]["p50"]
    rows.append(_row("cold start to first 201 (median, ms)", None, cold,
                     f"< {COLD_START_MAX_SECONDS * 1000:.0f} ms",
                     cold is not None and cold < COLD_START_MAX_SECONDS * 1000))
    return rows


def missed_scenarios(rows: list[dict[str, Any]]) -> set[str]:
    """Which scenarios a profile should look at: those with a missed target."""
    missed = set()
    for row in rows:
        if not row["met"]:
            missed.add(row["target"].split(" ")[0])  # replay, create, storm, cold
    return missed


def _row(target: str, connections: str | None, figure: Any, wanted: str, met: bool) -> dict[str, Any]:
    return {"target": target, "connections": connections, "figure": figure, "wanted": wanted, "met": bool(met)}


def _at_least(value: float | None, minimum: float) -> bool:
    return value is not None and value >= minimum


def _at_most(value: float | None, maximum: float) -> bool:
    return value is not None and value <= maximum
