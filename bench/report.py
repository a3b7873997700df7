"""latest.md: the run's figures as Markdown tables, quoted in the README as they are."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

SETTINGS_REASON = (
    "The Knative Service runs WORKERS=1, THREADS=8 (knative/configmap.yaml). One worker per pod: "
    "Knative scales by adding pods, each requesting 250m CPU, so a second worker buys nothing a "
    "second pod does not, while it doubles the pod's memory and its PostgreSQL connections "
    "(DATABASE_POOL_SIZE x WORKERS x max-scale must fit max_connections) and splits /metrics per "
    "process. Eight threads: equal to containerConcurrency and the autoscaling target, so a "
    "duplicate that waits up to IDEMPOTENCY_WAIT_SECONDS for its original holds one thread while "
    "the others keep serving; with one worker the GIL, not the thread count, bounds throughput."
)
NAMES = {
    "floor": "floor (constant function)",
    "create": "create, new keys",
    "replay": "replay, Redis path",
    "replayAfterFlush": "replay after Redis flush (PostgreSQL path)",
    "storm": "duplicate storm",
}


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Benchmark results" + (" (--quick)" if r["quick"] else ""),
        "",
        f"{r['date']} · `uname -m` {r['machine']} · {r['cpus']} CPUs · Python {r['python']} · "
        f"load average {_join(r['loadAverageAtStart'])} at start, {_join(r.get('loadAverageAtEnd', []))} at end · "
        f"run took {r.get('durationSeconds', '?')} s",
        "",
        f"PostgreSQL {r['postgres']}, Redis {r['redis']}, functions-framework {r['functionsFramework']}, "
        f"gunicorn {r['gunicorn']}. The function and the floor each ran as one copy with "
        + ", ".join(f"{k}={v}" for k, v in r["settingsUsed"].items())
        + f" (the Knative settings); {r['plan']['seconds']} s per point after {r['plan']['warmup_seconds']} s of warm-up.",
        "",
        *_generator(r),
        *_scenarios(r),
        *_targets(r),
        *_storm(r),
        *_round_trips(r),
        *_others(r),
        *_settings(r),
        *_profiles(r),
    ]
    return "\n".join(lines) + "\n"


def _generator(r: dict[str, Any]) -> list[str]:
    g, top = r["generator"], str(max(r["plan"]["concurrencies"]))
    floor = r["scenarios"]["floor"][top]
    wrk = g["wrkFloor"]
    wrk_line = (f"wrk against the same floor, {wrk['connections']} connections: {wrk['throughput']:.0f} req/s, "
                f"p50 {wrk.get('p50')} ms, p99 {wrk.get('p99')} ms (ours: {floor['throughput']:.0f} req/s, "
                f"p50 {floor['p50']} ms, p99 {floor['p99']} ms)."
                if "throughput" in wrk else f"wrk cross-check: {wrk['skipped']}.")
    return [
        "## Load generator",
        "",
        f"{g['kind']}. Its ceiling against a constant-answer asyncio server: "
        f"**{g['ceiling']['throughput']:.0f} req/s** at {g['ceiling']['connections']} connections, "
        f"{g['ceiling']['generatorCpuMicrosecondsPerRequest']} µs of its CPU per request = "
        f"**{g['ceiling']['throughput'] / floor['throughput']:.1f} x the floor**. "
        f"Against the floor it spent {floor['generatorCpuMicrosecondsPerRequest']} µs of CPU per request. {wrk_line}",
        "",
    ]


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
                p.get("serverCpuUtilisation"), p.get("storageCpuMicrosecondsPerRequest"), _path(p),
            ])
    columns = ["scenario", "connections", "req/s", "p50 ms", "p95 ms", "p99 ms", "x floor req/s",
               "x floor p99", "copy CPU µs/req (x floor)", "copy CPU busy", "storage CPU µs/req",
               "path checked"]
    return ["## Scenarios against the floor (same run, same generator)", "",
            *_table(columns, "lrrrrrrrrrrl", rows), 
        "",
        "Best of " + str(r["plan"]["rounds"]) + " round(s) per point. *copy CPU busy* is the copy's CPU "
        "seconds per second: near 1.0 its one worker process is saturated, so the GIL, not PostgreSQL "
        "or Redis, bounds it. *storage CPU* is PostgreSQL's and Redis's together.",
        "",
    ]


def _targets(r: dict[str, Any]) -> list[str]:
    rows = [[t["target"], t["connections"] or "-", t["figure"], t["wanted"], "yes" if t["met"] else "**no**"]
            for t in r["targets"]]
    return ["## Targets", "", *_table(["target", "connections", "figure", "wanted", "met"], "lrrll", rows), ""]


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


def _round_trips(r: dict[str, Any]) -> list[str]:
    labels = (("redisGet", "Redis GET (redis-py)"), ("postgresInsert", "PostgreSQL single-row INSERT (pg8000)"))
    rows = [[label, p["clients"], f"{p['throughput']:.0f}", p["p50"], p["p99"]]
            for name, label in labels for p in r["roundTrips"][name]]
    client = r["roundTrips"]["clientCpu"]
    return [
        "## Storage round trips (the drivers the function uses, one connection per client thread)", "",
        *_table(["operation", "clients", "ops/s", "p50 ms", "p99 ms"], "lrrrr", rows),
        "", f"Driver CPU in the calling process per call (hiredis installed: {client['hiredis']}):", "",
        *_table(["call", "CPU µs"], "lr", client["microsecondsPerCall"].items()), "",
    ]


def _others(r: dict[str, Any]) -> list[str]:
    cold, memory, listing = r["coldStart"], r["redisMemory"], r["listing"]
    lines = [
        "## Cold start, Redis memory, listing",
        "",
        f"- **Cold start**, process start to first 201, {len(cold['samples'])} fresh copies: "
        f"median {cold['toFirst201']['p50']} ms, worst {cold['toFirst201']['p99']} ms; of which the first "
        f"request itself (lazy PostgreSQL connection, schema check, Redis) median {cold['firstRequest']['p50']} ms.",
        f"- **Redis memory per finished key**: {memory['bytesPerFinishedKey']} bytes "
        f"(INFO used_memory {memory['usedMemoryBefore']} -> {memory['usedMemoryAfter']} over "
        f"{memory['finishedKeys']} keys).",
        "",
        f"`GET /orders` (page of {listing['pageSize']}), {listing['connections']} connections:",
        "",
    ]
    rows = [[name, f"{p['throughput']:.0f}", p["p50"], p["p99"]] for name, p in listing["pages"].items()]
    return lines + _table(["page", "req/s", "p50 ms", "p99 ms"], "lrrr", rows) + [
        "", f"Last page's plan: `{listing['lastPagePlan']}`.", ""]


def _settings(r: dict[str, Any]) -> list[str]:
    rows = [[s["workers"], s["threads"], s["connections"], f"{s['floor']['throughput']:.0f}",
             f"{s['create']['throughput']:.0f} ({_num(s['createThroughputRatio'])})",
             f"{s['replay']['throughput']:.0f} ({_num(s['replayThroughputRatio'])})",
             f"{s['replay']['p99']} ({_num(s['replayP99Ratio'])})"] for s in r["settingsTried"]]
    columns = ["WORKERS", "THREADS", "connections", "floor req/s", "create req/s (x floor)",
               "replay req/s (x floor)", "replay p99 ms (x floor)"]
    lines = ["## Worker and thread settings tried", "", *_table(columns, "rrrrrrr", rows)]
    return lines + ["", f"Best of {r['plan']['rounds']} round(s) per figure, fresh copies each round.", "",
                    r["settingsReason"], ""]


def _profiles(r: dict[str, Any]) -> list[str]:
    profiles = r.get("profiles")
    if not profiles:
        return []
    lines = ["## Profiles (py-spy, samples holding the GIL, highest concurrency)", ""]
    for name, p in profiles.items():
        if "skipped" in p:
            lines += [f"- {name}: {p['skipped']}", ""]
            continue
        layers = ", ".join(f"{layer} {share} %" for layer, share in p["selfPercentByLayer"].items())
        top = ", ".join(f"`{fn}` {share} %" for fn, share in list(p["selfPercentByFunction"].items())[:8])
        own = ", ".join(f"`{fn}` {share} %" for fn, share in list(p["inclusivePercentByOwnFunction"].items())[:10])
        lines += [f"- **{name}** ({p['samples']} samples). Self time by layer: {layers}.",
                  f"  Top functions (self): {top}."]
        lines += [f"  The orders code, inclusive: {own}."] if own else []
        lines += [""]
    return lines


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
