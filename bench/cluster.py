"""What a Redis Cluster costs beside one Redis: replays and creates on a copy pointed at a
local cluster (three primaries, a replica each) and on a copy pointed at the stack's one
Redis, alternated in the same run; and, inside one process, the claim store's script calls
pipelined through redis-py's cluster pipeline against each sent alone.

`python -m bench --redis cluster` adds it to the full run; `python -m bench.cluster
[--quick]` runs it alone (a stack of its own). The copy's CPU per request is the figure
to compare on a busy machine: throughput moves with whatever else runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from typing import Any

from devserver.cluster import RedisCluster, redis_cli_binary
from devserver.stack import LocalStack
from function.claims import ClaimStore
from function import records
from function.records import InFlight, redis_key
from function.targets import parse_redis_url
from loadgen.closed_loop import measure

from . import traffic
from .knative import bench_copy_settings
from .cpu import tree_cpu_seconds
from .plan import FULL, QUICK, Plan
from .scenarios import outcome_counts
from .stats import figures, ratio

CONNECTIONS = 16
KINDS = ("node", "cluster")


def cluster_cost(stack: LocalStack, plan: Plan, rounds: int | None = None) -> dict[str, Any]:
    if redis_cli_binary() is None:
        return {"skipped": "redis-cli is not installed: apt-get install -y redis-server (or redis-tools)"}
    cluster = RedisCluster(stack.workdir / "bench-cluster").start()
    copies = {"node": stack.start_copy(), "cluster": stack.start_copy(env={"REDIS_URL": cluster.url})}
    try:
        run_id = uuid.uuid4().hex[:8]
        profile = f"bench-cluster-{run_id}"
        prepared = {kind: [traffic.create_request(copy.url, profile, f"replayed-{n}") for n in range(plan.replay_keys)]
                    for kind, copy in copies.items()}
        # Made on one copy, then sent once to the other: its Redis gets the answer from PostgreSQL.
        for kind, copy in copies.items():
            measure(copy.url, CONNECTIONS, traffic.once_each(prepared[kind]), seconds=60)
        points: dict[str, dict[str, list[dict[str, Any]]]] = {"replay": {k: [] for k in KINDS},
                                                            "create": {k: [] for k in KINDS}}
        for round_number in range(rounds or max(plan.rounds, 1)):
            for kind, copy in copies.items():
                points["replay"][kind].append(_point(copy, traffic.cycling(prepared[kind]), plan, "replayed-redis"))
                stream = traffic.new_keys(copy.url, profile, f"{kind}-{round_number}")
                points["create"][kind].append(_point(copy, stream, plan, "created"))
        best = {scenario: {kind: min(rounds, key=lambda p: p["copyCpuMicrosecondsPerRequest"] or 1e12)
                           for kind, rounds in by_kind.items()} for scenario, by_kind in points.items()}
        return {
            "connections": CONNECTIONS, "points": best,
            # Best round against best round, and median against median: the load from
            # other work only ever adds CPU (cache misses, preemption), to either side.
            "clusterOverNode": {scenario: {
                "copyCpuPerRequest": ratio(by_kind["cluster"]["copyCpuMicrosecondsPerRequest"],
                                           by_kind["node"]["copyCpuMicrosecondsPerRequest"]),
                "copyCpuPerRequestMedians": ratio(_median_cpu(points[scenario]["cluster"]),
                                                  _median_cpu(points[scenario]["node"])),
                "throughput": ratio(by_kind["cluster"]["throughput"], by_kind["node"]["throughput"]),
            } for scenario, by_kind in best.items()},
            "cpuByRound": {scenario: {kind: [p["copyCpuMicrosecondsPerRequest"] for p in rounds]
                                      for kind, rounds in by_kind.items()} for scenario, by_kind in points.items()},
            "pipelining": asyncio.run(_pipelining(cluster.url, plan.seconds)),
        }
    finally:
        for copy in copies.values():
            copy.stop(timeout_seconds=10)
            stack.copies.remove(copy)
        cluster.stop()


def _median_cpu(rounds: list[dict[str, Any]]) -> float:
    return float(statistics.median(p["copyCpuMicrosecondsPerRequest"] or 0 for p in rounds))


def _point(copy: Any, stream: Any, plan: Plan, expect: str) -> dict[str, Any]:
    measure(copy.url, CONNECTIONS, stream, seconds=plan.warmup_seconds)
    before = outcome_counts(copy.url)
    cpu = tree_cpu_seconds([copy.process.pid])
    measured = measure(copy.url, CONNECTIONS, stream, seconds=plan.seconds)
    cpu = tree_cpu_seconds([copy.process.pid]) - cpu
    point = figures(measured)
    answered = len(measured.answers)
    point["copyCpuMicrosecondsPerRequest"] = round(cpu / answered * 1e6) if answered else None
    point["tookExpectedPath"] = (outcome_counts(copy.url) - before)[expect] == answered
    return point


async def _pipelining(url: str, seconds: float) -> dict[str, Any]:
    """16 callers claiming-or-reading finished keys in a loop, through the claim store
    (calls of one loop turn pipelined, one pipeline per primary) and as plain routed
    EVALSHA calls each on its own: calls/s and this process's CPU per call."""
    store = ClaimStore(parse_redis_url(url), timeout_seconds=2.0)
    keys = [redis_key("bench-pipelining", str(n)) for n in range(2000)]
    args = (records.encode(InFlight("0" * 64, "bench")), 60_000)
    script = store._claim_or_read  # claim-or-read: the first call claims, the rest read the claim
    for key in keys:
        await store.claim_or_read(key, InFlight("0" * 64, "bench"), 60_000)

    async def pipelined(key: bytes) -> object:
        return await store._pipeline.call(script, key, args)

    async def alone(key: bytes) -> object:
        return await script(keys=[key], args=list(args))

    results = {}
    for name, call in (("pipelined", pipelined), ("alone", alone), ("pipelined2", pipelined), ("alone2", alone)):
        results[name] = await _calls(call, keys, seconds)
    best: dict[str, Any] = {name: min(results[name], results[name + "2"], key=lambda r: r["cpuMicrosecondsPerCall"])
                            for name in ("pipelined", "alone")}
    best["cpuAloneOverPipelined"] = ratio(best["alone"]["cpuMicrosecondsPerCall"],
                                          best["pipelined"]["cpuMicrosecondsPerCall"])
    return best


async def _calls(call: Any, keys: list[bytes], seconds: float) -> dict[str, Any]:
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller(offset: int) -> None:
        nonlocal done
        n = offset
        while time.perf_counter() < deadline:
            await call(keys[n % len(keys)])
            n += CONNECTIONS
            done += 1

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller(n) for n in range(CONNECTIONS)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - started
    return {"callsPerSecond": round(done / wall), "cpuMicrosecondsPerCall": round(cpu / done * 1e6, 1) if done else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short points: proves it runs")
    parser.add_argument("--rounds", type=int, help="rounds of the four points (default: the plan's)")
    options = parser.parse_args(argv)
    plan = QUICK if options.quick else FULL
    with LocalStack(env=bench_copy_settings(), durable=True) as stack:
        print(json.dumps(cluster_cost(stack, plan, options.rounds), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
