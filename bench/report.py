"""latest.md: the run's figures as Markdown tables, quoted in docs/bench.md as they are."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

NAMES = {
    "floorDefault": "floor, default stack (gunicorn gthread + Flask, constant 201)",
    "floorAsgi": "floor, ASGI stack (`--asgi`, async constant 201)",
    "floorReplay": "floor, replay-shaped (ASGI stack: parse, fingerprint, one EVALSHA, stored bytes)",
    "create": "create, new keys",
    "createUnbatched": "create, new keys, group commit off (DATABASE_BATCH_MAX=1)",
    "replay": "replay, Redis path",
    "replayAfterFlush": "replay, PostgreSQL path (after a Redis flush)",
    "storm": "duplicate storm",
}


def markdown(r: dict[str, Any]) -> str:
    serving = ", ".join(f"{name} {v}" for name, v in r["serving"].items())
    lines = [
        "# Benchmark results" + (" (--quick: proves the suite runs; too short to quote)" if r["quick"] else ""),
        "",
        f"{r['date']} · `uname -m` {r['machine']} · {r['cpus']} CPUs · Python {r['python']} · "
        f"load average {_join(r['loadAverageAtStart'])} at start, {_join(r.get('loadAverageAtEnd', []))} at end · "
        f"run took {r.get('durationSeconds', '?')} s",
        "",
        f"PostgreSQL {r['postgres']}, Redis {r['redis']}; {serving}. The function "
        f"(`{r['functionCommand']}`, {'ASGI' if r['functionOnAsgiStack'] else 'default'} stack) and each floor ran "
        "as one copy with " + ", ".join(f"{k}={v}" for k, v in r["settingsUsed"].items())
        + f" (the Knative settings); {r['plan']['seconds']} s per point after {r['plan']['warmup_seconds']} s "
        "of warm-up, one load generator (asyncio keep-alive connections, closed loop).",
        "",
        *_scenarios(r),
        *_targets(r),
        *_storm(r),
        *_tracing(r),
        *_cluster(r),
        *_publishing(r),
        *_pgbouncer(r),
        *_profiles(r),
        *_others(r),
    ]
    return "\n".join(lines) + "\n"


def _table(columns: list[str], align: str, rows: Iterable[Sequence[object]]) -> list[str]:
    """A Markdown table; `align` has one letter per column: l (text) or r (figures)."""
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return ["| " + " | ".join(columns) + " |", rule,
            *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)]


def _scenarios(r: dict[str, Any]) -> list[str]:
    rows = []
    for name, points in r["scenarios"].items():
        for at, p in points.items():
            ratios = r["ratios"].get(name, {}).get(at, {})
            rows.append([
                NAMES[name], at, f"{p['throughput']:.0f}", p["p50"], p["p95"], p["p99"],
                _num(ratios.get("throughput"), 1.0), _num(ratios.get("p99"), 1.0),
                f"{p.get('serverCpuMicrosecondsPerRequest')} ({_num(ratios.get('serverCpuPerRequest'), 1.0)})",
                p.get("serverCpuUtilisation"), p.get("serverContextSwitchesPerRequest", "-"),
                p.get("storageCpuMicrosecondsPerRequest"), p.get("postgresCpuMicrosecondsPerOrder", "-"),
                p.get("insertBatchSizeMean", "-"), _path(p),
            ])
    columns = ["scenario", "connections", "req/s", "p50 ms", "p95 ms", "p99 ms", "x ASGI floor req/s",
               "x ASGI floor p99", "copy CPU µs/req (x ASGI floor)", "copy CPU busy",
               "copy context switches/req", "storage CPU µs/req", "PostgreSQL CPU µs/created order",
               "mean INSERT batch", "path checked"]
    return ["## Scenarios against the ASGI floor (same run, same generator)", "",
            *_table(columns, "lrrrrrrrrrrrrrl", rows),
            "",
            "Best of " + str(r["plan"]["rounds"]) + " round(s) per point. *copy CPU busy* is the copy's CPU "
            "seconds per second: near 1.0 its one worker process is saturated. *copy context switches* are "
            "voluntary ones: a thread of the copy waiting for the network, for PostgreSQL or for the GIL (a create "
            "hands the GIL between the event loop and a pg8000 thread several times). *storage CPU* is PostgreSQL's "
            "and Redis's together; *PostgreSQL CPU* is all its processes' over the orders the point created. "
            "*mean INSERT batch*: creates per INSERT (orders_insert_batch_creates). *path checked*: the copy's outcome counters show every answer took the "
            "scenario's path (created, replayed-redis, replayed-postgres).",
            "",
            ]


def _targets(r: dict[str, Any]) -> list[str]:
    rows = [[t["target"], t["connections"] or "-", t["figure"], t["wanted"], "yes" if t["met"] else "**no**"]
            for t in r["targets"]]
    met = sum(1 for t in r["targets"] if t["met"])
    return ["## Targets (one copy, one worker)", "",
            *_table(["target", "connections", "figure", "wanted", "met"], "lrrll", rows), "",
            f"{met} of {len(r['targets'])} met.", ""]


def _storm(r: dict[str, Any]) -> list[str]:
    lines = [
        "## Duplicate storm",
        "",
        f"Each key sent {r['plan']['storm_duplicates']} times in a row; with at least that many connections "
        "all its duplicates are in flight at once. Checked against PostgreSQL afterwards.",
        "",
    ]
    rows = []
    for at, point in r["scenarios"]["storm"].items():
        s = point["storm"]
        rows.append([at, s["keys"], s["requests"], s["duplicatesCreated"],
                     f"{s['answersCarryingOriginal']} ({_percent(s['originalShare'])})", s["conflicts409"]])
    columns = ["connections", "keys", "requests (all rounds)", "duplicates created",
               "answers with the original order", "409"]
    return lines + _table(columns, "rrrrrr", rows) + [""]


def _tracing(r: dict[str, Any]) -> list[str]:
    cost = r.get("tracing")
    if not cost:
        return []
    lines = ["## Tracing off and on (replays, Redis path)", "",
             f"Copies in the same run, {cost['connections']} connections, alternated: tracing off (the default), "
             "on, exporting every span over OTLP/HTTP to a local sink, and sampled5, keeping 5 % of traces "
             "(`OTEL_TRACES_SAMPLER=parentbased_traceidratio`, `OTEL_TRACES_SAMPLER_ARG=0.05`).", ""]
    off_cpu = cost["points"]["off"].get("copyCpuMicrosecondsPerReplay")
    rows = [[name, f"{p['throughput']:.0f}", p["p50"], p["p99"], p.get("copyCpuMicrosecondsPerReplay"),
             _num(ratio_of(p.get("copyCpuMicrosecondsPerReplay"), off_cpu), 1.0),
             _join(cost["throughputByRound"][name])] for name, p in cost["points"].items()]
    return lines + _table(["tracing", "replays/s", "p50 ms", "p99 ms", "copy CPU µs/replay", "CPU x off",
                           "req/s by round"], "lrrrrrl", rows) + [""]


def ratio_of(value: float | None, base: float | None) -> float | None:
    return round(value / base, 2) if value and base else None


def _cluster(r: dict[str, Any]) -> list[str]:
    cost = r.get("redisCluster")
    if not cost:
        return []
    if "skipped" in cost:
        return ["", "## Redis Cluster", "", f"Skipped: {cost['skipped']}"]
    lines = ["", "## Redis Cluster beside one Redis", "",
             f"Two copies in the same run, {cost['connections']} connections, alternated: one on the stack's Redis, one "
             "on a local Redis Cluster (3 primaries, a replica each). Copy CPU per request is the figure to compare.", ""]
    rows = [(scenario, kind, _num(point["throughput"]), _num(point["p50"]), _num(point["p99"]),
             _num(point["copyCpuMicrosecondsPerRequest"]), _join(cost["cpuByRound"][scenario][kind]))
            for scenario, by_kind in cost["points"].items() for kind, point in by_kind.items()]
    lines += _table(["point", "Redis", "req/s", "p50 ms", "p99 ms", "copy CPU µs/req", "CPU by round"], "llrrrrr", rows)
    ratios = ", ".join(f"{scenario} {r['copyCpuPerRequest']}x (medians {r['copyCpuPerRequestMedians']}x)"
                       for scenario, r in cost["clusterOverNode"].items())
    piped = cost["pipelining"]
    return lines + ["", f"Cluster over one Redis, copy CPU per request: {ratios}. Script calls in one process: "
                    f"{piped['pipelined']['cpuMicrosecondsPerCall']} µs pipelined per primary, "
                    f"{piped['alone']['cpuMicrosecondsPerCall']} µs sent alone."]


def _publishing(r: dict[str, Any]) -> list[str]:
    cost = r.get("publishing")
    if not cost:
        return []
    lines = ["## Order events off and on (creates, new keys)", "",
             f"Two copies in the same run, {cost['connections']} connections, alternated: K_SINK unset (the "
             "default) and set to a local receiver, each order's event recorded in its INSERT, POSTed after the "
             f"answer and its row deleted. Afterwards the receiver held {cost['distinctEventIds']} distinct event "
             f"ids in {cost['eventsReceived']} deliveries; {cost['pendingAtEnd']} left pending.", ""]
    rows = [[name, f"{p['throughput']:.0f}", p["p50"], p["p99"], p.get("copyCpuMicrosecondsPerCreate"),
             p.get("postgresCpuMicrosecondsPerCreate"), _join(cost["throughputByRound"][name])]
            for name, p in cost["points"].items()]
    return lines + _table(["events", "creates/s", "p50 ms", "p99 ms", "copy CPU µs/create",
                           "PostgreSQL CPU µs/create", "req/s by round"], "lrrrrrl", rows) + [""]


def _pgbouncer(r: dict[str, Any]) -> list[str]:
    scaleout = r.get("pgbouncer")
    if not scaleout:
        return []
    lines = ["## Creates through one PgBouncer (transaction pooling)", ""]
    if "skipped" in scaleout:
        return lines + [f"Skipped: {scaleout['skipped']}.", ""]
    lines += [
        f"New keys, {scaleout['connections']} connections in all spread over the copies; PgBouncer "
        f"`default_pool_size` {scaleout['defaultPoolSize']}; each copy DATABASE_POOLING=transaction, "
        "beside one copy straight to PostgreSQL (prepared statements, session timeouts); each with group commit "
        "on (the default) and off (DATABASE_BATCH_MAX=1). On 2 cores more copies add no CPU: read the shared "
        "parts' behaviour and the CPU per create, the copies' and PostgreSQL's.",
        "",
    ]
    rows = [[name, f"{p['throughput']:.0f}", p["p50"], p["p99"], p.get("copyCpuMicrosecondsPerCreate"),
             p.get("postgresCpuMicrosecondsPerCreate", "-"), p["errors"],
             ", ".join(f"{k}: {v}" for k, v in p["statuses"].items())]
            for name, p in scaleout["points"].items()]
    return lines + _table(["copies", "creates/s", "p50 ms", "p99 ms", "copy CPU µs/create",
                           "PostgreSQL CPU µs/create", "errors", "statuses"], "lrrrrrrl", rows) + [""]


def _profiles(r: dict[str, Any]) -> list[str]:
    """py-spy (GIL holders only) over the copy at 16 connections: where its CPU goes."""
    profiles = r.get("profiles")
    if not profiles:
        return []
    lines = ["## Profiles (py-spy, samples holding the GIL, 16 connections)", ""]
    for name, profile in profiles.items():
        if "skipped" in profile:
            lines += [f"- **{name}**: skipped: {profile['skipped']}", ""]
            continue
        layers = ", ".join(f"{k} {v} %" for k, v in list(profile["selfPercentByLayer"].items())[:6])
        own = ", ".join(f"`{k}` {v} %" for k, v in list(profile["inclusivePercentByOwnFunction"].items())[:8])
        hot = ", ".join(f"`{k}` {v} %" for k, v in list(profile["selfPercentByFunction"].items())[:6])
        lines += [f"- **{name}** ({profile['samples']} samples). Self time by layer: {layers}.",
                  f"  Hottest functions (self): {hot}.", f"  The orders code, inclusive: {own}.", ""]
    return lines


def _others(r: dict[str, Any]) -> list[str]:
    cold, listing = r["coldStart"], r["listing"]
    lines = [
        "## Cold start, listing",
        "",
        f"- **Cold start**, process start to first 201, {len(cold['samples'])} fresh copies: "
        f"median {cold['toFirst201']['p50']} ms, worst {cold['toFirst201']['p99']} ms; of which the first "
        f"request itself (lazy PostgreSQL connection, schema check, Redis) median {cold['firstRequest']['p50']} ms, "
        f"the copy's second median {cold.get('secondRequest', {}).get('p50')} ms.",
        _floor_cold_start(cold, r.get("coldStartFloor")),
        _container_cold_start(r.get("coldStartContainer")),
        "",
        f"`GET /orders` (page of {listing['pageSize']}), {listing['connections']} connections:",
        "",
    ]
    rows = [[name, f"{p['throughput']:.0f}", p["p50"], p["p99"]] for name, p in listing["pages"].items()]
    return lines + _table(["page", "req/s", "p50 ms", "p99 ms"], "lrrr", rows) + [
        "", f"Last page's plan: `{listing['lastPagePlan']}`.", ""]


def _floor_cold_start(cold: dict[str, Any], floor: dict[str, Any] | None) -> str:
    if not floor:
        return ""
    return (f"- **The ASGI floor's cold start**, alternated with the function's: median "
            f"{floor['toFirst201']['p50']} ms to its first 201; the function's over it: "
            f"{_num(ratio_of(cold['toFirst201']['p50'], floor['toFirst201']['p50']), 1.0)} x.")


def _container_cold_start(cold: dict[str, Any] | None) -> str:
    if not cold:
        return ""
    if "skipped" in cold:
        return f"- **Cold start of the image's container**: not measured ({cold['skipped']})."
    return (f"- **Cold start of the image's container** ({cold['imageBytes'] / 1e6:.0f} MB, built in "
            f"{cold['buildSeconds']} s), read-only, as Knative runs it, {len(cold['samples'])} fresh containers: "
            f"from `podman run` to first 201 median {cold['toFirst201']['p50']} ms, worst {cold['toFirst201']['p99']} ms; "
            f"from the container's process start median {cold['fromProcessStart']['p50']} ms (the bare process: above).")


def _path(point: dict[str, Any]) -> str:
    if "tookExpectedPath" in point:
        return "yes" if point["tookExpectedPath"] else f"**no**: {point['outcomes']}"
    if "storm" in point:
        return "see storm"
    return "-"


def _num(value: float | None, default: float | None = None) -> str:
    value = default if value is None else value
    return "-" if value is None else f"{value:.2f}"


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.2f} %"


def _join(values: list[float]) -> str:
    return " / ".join(str(v) for v in values) or "?"
