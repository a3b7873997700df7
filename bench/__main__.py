"""`python -m bench [--quick] [--profile | --no-profile]`: every figure in one run, on one
machine, with one load generator; writes bench/results/latest.json and latest.md.

Figures, not tests: the exit status is 0 whatever the numbers, non-zero only when the
suite itself could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from demo.stack import LocalStack

from . import ceiling, coldstart, listing, machine, report, roundtrips, targets, tuning, wrk
from .copies import floor_command
from .loadgen import measure, request_bytes
from .plan import FULL, QUICK, Plan
from .profiling import profile_while
from .scenarios import Scenarios
from .stats import figures, ratio

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCENARIOS = ("floor", "create", "replay", "replayAfterFlush", "storm")


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    plan = QUICK if options.quick else FULL
    started = time.perf_counter()
    results = run(plan, profile=options.profile, say=_progress(started))
    results["durationSeconds"] = round(time.perf_counter() - started, 1)
    options.output.mkdir(parents=True, exist_ok=True)
    (options.output / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (options.output / "latest.md").write_text(report.markdown(results))
    print(report.markdown(results))
    print(f"written: {options.output / 'latest.json'}, {options.output / 'latest.md'}", file=sys.stderr)
    return 0


def run(plan: Plan, *, profile: bool | None, say: Any) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    knative = tuning.knative_settings()
    # Durable PostgreSQL (fsync on), as in production: a create waits for its commit.
    with LocalStack(0, env=knative, durable_postgres=True) as stack:
        say("PostgreSQL, Redis, the function and the floor are starting")
        function = stack.start_copy()
        floor = stack.start_copy(command=floor_command())
        results: dict[str, Any] = {
            **machine.describe(stack.database_url, stack.redis_url),
            "quick": plan is QUICK, "plan": asdict(plan),
            "knativeSettings": knative,
            "settingsUsed": {name: knative[name] for name in ("WORKERS", "THREADS", "DATABASE_POOL_SIZE", "LOG_LEVEL")},
        }
        top = max(plan.concurrencies)
        say("load generator ceiling")
        results["generator"] = _generator(plan, floor.url, top)
        say("storage round trips")
        results["roundTrips"] = {
            "redisGet": [roundtrips.redis_get(stack.redis_url, c, plan.seconds / 2) for c in (1, 4)],
            "postgresInsert": [roundtrips.postgres_insert(stack.database_url, c, plan.seconds / 2) for c in (1, 4)],
            "clientCpu": roundtrips.client_cpu(stack.database_url, stack.redis_url),
        }
        storage = [server.process.pid for server in (stack.postgres, stack.redis) if server and server.process]
        scenarios = Scenarios(plan, function=function, floor=floor, database_url=stack.database_url,
                              redis_url=stack.redis_url, storage_pids=storage, run_id=run_id)
        say(f"seeding {plan.seed_keys} orders for replays")
        scenarios.seed()
        rounds: dict[str, dict[str, list[dict[str, Any]]]] = {name: {} for name in SCENARIOS}
        for round_number in range(1, plan.rounds + 1):
            for connections in plan.concurrencies:
                for name, point in (
                    ("floor", scenarios.floor), ("create", scenarios.create), ("replay", scenarios.replay),
                    ("replayAfterFlush", lambda c: scenarios.replay_after_flush(c, memory=c == top)),
                    ("storm", scenarios.storm),
                ):
                    say(f"round {round_number}/{plan.rounds}: {name} with {connections} connections")
                    rounds[name].setdefault(str(connections), []).append(point(connections))
        results["scenarios"] = {
            name: {at: _best(measured) for at, measured in points.items()} for name, points in rounds.items()
        }
        results["redisMemory"] = scenarios.redis_memory
        results["ratios"] = _ratios(results["scenarios"])
        say(f"cold start x {plan.cold_starts}")
        results["coldStart"] = coldstart.cold_starts(lambda: stack.start_copy(wait=False), plan.cold_starts)
        say(f"GET /orders with 10 and {plan.big_profile_orders} orders")
        results["listing"] = listing.listing_latency(
            function.url, stack.database_url, run_id, plan.big_profile_orders, plan.seconds / 2)
        results["targets"] = targets.judge(results)
        missed = targets.missed_scenarios(results["targets"]) & {"replay", "create"}
        if profile or (profile is None and missed):
            say(f"profiling {', '.join(sorted(missed or {'replay', 'create'}))} and the floor")
            results["profiles"] = _profiles(plan, scenarios, function, floor, top, missed or {"replay", "create"})
        say("worker and thread settings")
        function.stop()
        floor.stop()
        results["settingsTried"] = tuning.try_settings(
            plan.settings_tried, top, plan.settings_seconds, plan.rounds,
            start_function=lambda env: stack.start_copy(env),
            start_floor=lambda env: stack.start_copy(env, command=floor_command()),
        )
        results["settingsReason"] = report.SETTINGS_REASON
        results["loadAverageAtEnd"] = [round(value, 2) for value in os.getloadavg()]
    return results


def _generator(plan: Plan, floor_url: str, connections: int) -> dict[str, Any]:
    process, url = ceiling.start_constant_server()
    try:
        prepared = request_bytes("POST", url + "/orders", {"Content-Type": "application/json"}, b"{}")
        ceiling_figures = figures(measure(url, connections, lambda: prepared, seconds=plan.seconds / 2))
    finally:
        process.kill()
        process.wait()
    return {
        "kind": "asyncio raw-socket keep-alive HTTP/1.1, closed loop, one process",
        "ceiling": ceiling_figures,
        "wrkFloor": wrk.wrk_floor(floor_url, connections, plan.seconds),
    }


def _best(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the highest throughput, with every round's throughput beside it."""
    best = dict(max(rounds, key=lambda point: point["throughput"]))
    best["throughputByRound"] = [point["throughput"] for point in rounds]
    if "storm" in best:  # the guarantee is judged over every round, not the best one
        best["storm"] = {
            "keys": sum(point["storm"]["keys"] for point in rounds),
            "duplicatesCreated": sum(point["storm"]["duplicatesCreated"] for point in rounds),
            "answersCarryingOriginal": sum(point["storm"]["answersCarryingOriginal"] for point in rounds),
            "requests": sum(point["requests"] for point in rounds),
            "conflicts409": sum(point["storm"]["conflicts409"] for point in rounds),
        }
        best["storm"]["originalShare"] = round(
            best["storm"]["answersCarryingOriginal"] / best["storm"]["requests"], 4)
    return best


def _ratios(scenarios: dict[str, Any]) -> dict[str, Any]:
    """Each scenario's throughput and p99 over the floor's, at the same concurrency."""
    ratios: dict[str, Any] = {}
    for name in SCENARIOS[1:]:
        ratios[name] = {}
        for at, point in scenarios[name].items():
            floor = scenarios["floor"][at]
            ratios[name][at] = {
                "throughput": ratio(point["throughput"], floor["throughput"]),
                # The inverse of the throughput ratio a CPU-bound copy would reach on a quiet machine.
                "serverCpuPerRequest": ratio(point.get("serverCpuMicrosecondsPerRequest"),
                                             floor.get("serverCpuMicrosecondsPerRequest")),
                "p50": ratio(point["p50"], floor["p50"]),
                "p99": ratio(point["p99"], floor["p99"]),
            }
    return ratios


def _profiles(
    plan: Plan, scenarios: Scenarios, function: Any, floor: Any, connections: int, which: set[str],
) -> dict[str, Any]:
    seconds = plan.seconds
    profiled = {"floor": profile_while(floor.process.pid, lambda: scenarios.floor(connections), seconds)}
    if "create" in which:
        profiled["create"] = profile_while(function.process.pid, lambda: scenarios.create(connections), seconds)
    if "replay" in which:
        scenarios.prepare_replays()  # Redis was flushed since: refill it outside the profile
        profiled["replay"] = profile_while(function.process.pid, lambda: scenarios.replay(connections), seconds)
    return profiled


def _progress(started: float) -> Any:
    def say(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)
    return say


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter points, fewer settings (about 2 minutes)")
    profiling = parser.add_mutually_exclusive_group()
    profiling.add_argument("--profile", action="store_true", default=None,
                           help="profile create and replay with py-spy even if every target is met")
    profiling.add_argument("--no-profile", dest="profile", action="store_false",
                           help="never profile (by default a missed create/replay target is profiled)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR, help="where latest.json/.md go")
    return parser


if __name__ == "__main__":
    sys.exit(main())
